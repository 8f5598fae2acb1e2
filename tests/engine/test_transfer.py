"""The hand-off flow (转人工) on a virtual clock: hold, dial agents, whisper, bridge, fallback, hang-ups.

The callee is the scripted leg of test_session; agents are FakeAgentLegs whose media ticks on the same
virtual clock; the bridge is the real gateway.bridge.MediaBridge over those legs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time

import numpy as np
import pytest

import dialplans
from engine.audio import PCM
from engine.call.session import CallSession
from engine.call.transfer import HandoffUpdate, Transferer
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.errors import ModelError
from engine.handoff import AgentConfig, AgentDirectory, QueueConfig, WorkingHours
from engine.outcome import CallOutcome
from gateway.bridge import BridgeRecorder, MediaBridge
from tests.engine.fakes import LengthRecognizer, ScriptedLeg, ToneSynth
from tests.engine.handoff_fakes import AgentAskingClassifier, FakeLines, RecordingPlayout

# Monday 2026-01-05 10:00 UTC = 18:00 in Shanghai
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class Call:
    def __init__(
        self,
        *,
        agents: Sequence[AgentConfig],
        queue: QueueConfig,
        plans: Mapping[str, Sequence[dict[str, object]]],
        with_transfer: bool = True,
    ) -> None:
        self.clock = VirtualClock(START)
        self.leg = ScriptedLeg(self.clock, ["我要转人工"])
        self.leg._playout = RecordingPlayout()
        self.synth = ToneSynth()
        self.directory = AgentDirectory(agents=agents, queues=[queue], clock=self.clock)
        self.lines = FakeLines(self.clock, plans)
        self.bridges: list[MediaBridge] = []
        self.recorder = BridgeRecorder(__import__("pathlib").Path("/nonexistent/never-written.wav"))

        def bridge(a: object, b: object) -> MediaBridge:
            br = MediaBridge(a, b, recorder=self.recorder)  # type: ignore[arg-type]
            self.bridges.append(br)
            return br

        self.updates: list[HandoffUpdate] = []
        self.transferer = Transferer(
            self.directory, self.lines, self.synth, bridge, clock=self.clock, on_update=self.updates.append
        )
        self.session = CallSession(
            self.leg,
            dialplans.get("trial-class-zh"),
            recognizer=LengthRecognizer(self.leg),
            classifier=AgentAskingClassifier(),
            synthesizer=self.synth,
            clock=self.clock,
            variables={"name": "王女士"},
            transfer=self.transferer if with_transfer else None,
        )

    @property
    def callee_heard(self) -> RecordingPlayout:
        p = self.leg._playout
        assert isinstance(p, RecordingPlayout)
        return p

    async def run(
        self,
        *,
        until_s: float = 120.0,
        when: Callable[[Call], bool] | None = None,
        then: Callable[[Call], object] | None = None,
        steps: Sequence[tuple[Callable[[Call], bool], Callable[[Call], object]]] = (),
    ) -> CallOutcome:
        task = asyncio.create_task(self.session.run())
        todo = list(steps)
        if when is not None and then is not None:
            todo.append((when, then))
        for _ in range(int(until_s / 0.02)):
            if task.done():
                break
            if todo and todo[0][0](self):
                r = todo.pop(0)[1](self)
                if asyncio.iscoroutine(r):
                    await r
            if (
                self.session._media_task is None
                and not self.transferer.active
                and not self.leg._ended.is_set()
            ):
                # nobody reads the callee's frames (on hold): a real leg's ticker still sends its playout
                self.leg.playout.next_frame()
            await self.clock.advance(0.02)
        assert task.done(), f"session did not finish in {until_s} virtual seconds"
        return task.result()


def _agents() -> list[AgentConfig]:
    return [
        AgentConfig(id="a1", uri="sip:a1@pbx", skills=["zh", "course"], wrap_up_s=30),
        AgentConfig(id="a2", uri="sip:a2@pbx", skills=["zh"]),
        AgentConfig(id="a3", uri="sip:a3@pbx", skills=["zh", "course"]),
    ]


def _queue(**kw: object) -> QueueConfig:
    base: dict[str, object] = {
        "name": "advisors",
        "skills": ["course"],
        "timeout_s": 20,
        "ring_timeout_s": 8,
        "hold_prompt": "请稍候",
    }
    base.update(kw)
    return QueueConfig.model_validate(base)


def _bridged(c: Call) -> bool:
    return bool(c.bridges) and c.callee_heard.count("bridge") > 100


async def test_transfer_whispers_then_bridges_until_the_agent_hangs_up() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 3.0}]})
    c.directory.set_state("a3", "offline")
    c.directory.set_state("a3", "available")  # a3 idle since now: a1 has waited longer
    o = await c.run(when=_bridged, then=lambda c: c.lines.legs[0].agent_hangs_up())

    assert c.lines.dialled == ["sip:a1@pbx"]  # longest idle with the skill; a2 lacks "course"
    assert c.lines.headers[0] == {"X-Outcall-Transfer": "fake-1"}
    agent = c.lines.legs[0]
    assert o.transfer is not None
    assert o.transfer.status == "bridged" and o.transfer.agent == "a1" and o.transfer.queue == "advisors"
    assert 3.0 <= o.transfer.wait_s < 6.0  # ring 3 s + the whisper
    assert 2.0 <= o.transfer.bridged_s < 3.0  # ~100+ frames relayed, then the agent hung up
    assert o.transfer.ended_by == "agent" and o.hangup_by == "agent"
    assert o.disposition is Disposition.ANSWERED
    assert "transferred" in o.tags
    # the agent heard the whisper (only the agent), then the callee through the bridge
    whisper = next(t for t in c.synth.rendered if "王女士" in t)
    assert "human_agent" in whisper and "我要转人工" in whisper
    assert agent.recording.count("whisper") > 0 and c.callee_heard.count("whisper") == 0
    assert c.callee_heard.count("hold") > 0 and agent.recording.count("hold") == 0
    first_bridge = c.callee_heard.sent.index("bridge")
    assert "hold" not in c.callee_heard.sent[first_bridge:]  # the hold stops before the bridge
    assert c.callee_heard.count("bridge") > 100 and agent.recording.count("bridge") > 100
    # audio really crossed: the callee's outbound frames are the agent's 1 kHz voice
    heard = c.callee_heard.sent_pcm[first_bridge + 5]
    assert int(abs(heard).max()) > 4000
    # the recording saw both directions
    assert min(c.recorder.frames) > 100
    # the callee leg was ended by us (BYE) after the agent left; a1 is wrapping up, others free
    assert c.leg.info.hangup_by is not None and c.leg._ended.is_set()
    assert c.directory.state("a1") == "wrap_up"
    await c.clock.advance(31)
    assert c.directory.state("a1") == "available"
    # the screen-pop feed: offered (summary + transcript so far), bridged, ended
    assert [u.type for u in c.updates] == ["offered", "bridged", "ended"]
    offered = c.updates[0]
    assert offered.agent == "a1" and offered.summary["intent"] == "human_agent"
    assert any(t["text"] == "我要转人工" and t["speaker"] == "callee" for t in offered.transcript)
    assert c.updates[-1].status == "bridged" and c.updates[-1].bridged_s == o.transfer.bridged_s
    assert c.transferer.screen_pops == {}  # gone once the call ended


class _WhisperlessSynth(ToneSynth):
    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        if "王女士" in text:
            raise ModelError("tts crashed")
        return await super().render(text, voice=voice, speed=speed)


async def test_a_whisper_the_tts_cannot_render_does_not_stop_the_bridge() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 1.0}]})
    c.transferer.synthesizer = _WhisperlessSynth()
    o = await c.run(when=_bridged, then=lambda c: c.lines.legs[0].agent_hangs_up())
    assert o.transfer is not None and o.transfer.status == "bridged" and o.error is None
    assert c.lines.legs[0].recording.count("whisper") == 0


async def test_no_agent_answers_falls_back_to_a_callback() -> None:
    never: list[dict[str, object]] = [{"answer_after": None}]
    c = Call(
        agents=_agents(),
        queue=_queue(timeout_s=12, ring_timeout_s=5),
        plans={"sip:a1@pbx": never, "sip:a3@pbx": never},
    )
    o = await c.run()
    assert o.transfer is not None and o.transfer.status == "no_agent"
    assert o.disposition is Disposition.TRANSFER_FAILED
    assert "callback" in o.tags and "human_requested" in o.tags
    assert o.variables.get("callback_time")  # the fallback node scheduled the call back
    # a1 rang 5 s, then a3 5 s, then a1 again until the 12 s ran out; every agent leg was cancelled
    assert c.lines.dialled[:3] == ["sip:a1@pbx", "sip:a3@pbx", "sip:a1@pbx"]
    assert all(leg.ended and leg.hangups >= 1 for leg in c.lines.legs)
    assert [a["result"] for a in o.transfer.attempts[:2]] == ["no_answer", "no_answer"]
    assert 12.0 <= o.transfer.wait_s < 13.5
    # the callee heard hold, then the apology (a bot turn at the fallback node)
    bot = [t.node for t in o.turns if t.speaker == "bot"]
    assert bot[-2:] == ["agent", "agent_busy"]
    assert c.callee_heard.count("hold") > 0 and c.callee_heard.count("agent_busy") > 0
    assert c.directory.state("a1") == "available" and c.directory.state("a3") == "available"


async def test_busy_agent_is_skipped_for_the_next() -> None:
    c = Call(
        agents=_agents(),
        queue=_queue(),
        plans={"sip:a1@pbx": [{"fail": Disposition.BUSY}], "sip:a3@pbx": [{"answer_after": 1.0}]},
    )
    o = await c.run(when=_bridged, then=lambda c: c.lines.legs[-1].agent_hangs_up())
    assert o.transfer is not None and o.transfer.status == "bridged" and o.transfer.agent == "a3"
    assert [a["result"] for a in o.transfer.attempts] == ["busy", "answered"]


async def test_callee_hanging_up_on_hold_cancels_the_agent_leg() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": None}]})
    o = await c.run(
        when=lambda c: bool(c.lines.legs) and c.callee_heard.count("hold") > 50,
        then=lambda c: c.leg.callee_hangs_up(),
    )
    agent = c.lines.legs[0]
    assert agent.ended and agent.hangups == 1 and agent.info.answered_at is None
    assert o.transfer is not None and o.transfer.status == "callee_hung_up"
    assert o.transfer.ended_by == "callee" and o.hangup_by == "callee"
    assert o.disposition is Disposition.TRANSFER_FAILED
    assert len(c.lines.dialled) == 1
    assert c.directory.state("a1") == "available"


async def test_callee_hanging_up_while_bridged_ends_the_agent_leg() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 1.0}]})
    o = await c.run(when=_bridged, then=lambda c: c.leg.callee_hangs_up())
    agent = c.lines.legs[0]
    assert agent.ended and agent.hangups == 1
    assert o.transfer is not None and o.transfer.status == "bridged" and o.transfer.ended_by == "callee"
    assert o.hangup_by == "callee" and o.disposition is Disposition.ANSWERED


async def test_queue_outside_working_hours_goes_straight_to_the_fallback() -> None:
    hours = WorkingHours(start=time(9), end=time(17, 30), tz="Asia/Shanghai")  # 18:00 there now
    c = Call(agents=_agents(), queue=_queue(hours=hours, timeout_s=5), plans={})
    o = await c.run()
    assert c.lines.dialled == []
    assert o.transfer is not None and o.transfer.status == "no_agent"
    assert o.transfer.reason and "working hours" in o.transfer.reason
    assert o.disposition is Disposition.TRANSFER_FAILED and "callback" in o.tags


async def test_without_a_transferer_the_fallback_runs_as_before() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={}, with_transfer=False)
    o = await c.run()
    assert o.transfer is not None and o.transfer.status == "no_agent"
    assert o.disposition is Disposition.TRANSFER_FAILED and "callback" in o.tags
    assert c.callee_heard.count("hold") == 0


async def test_queue_number_is_dialled_as_is() -> None:
    c = Call(
        agents=[],
        queue=_queue(uri="sip:4008@callcentre", skills=[]),
        plans={"sip:4008@callcentre": [{"answer_after": 2.0}]},
    )
    o = await c.run(when=_bridged, then=lambda c: c.lines.legs[0].agent_hangs_up())
    assert c.lines.dialled == ["sip:4008@callcentre"]
    assert o.transfer is not None and o.transfer.agent == "sip:4008@callcentre"
    assert o.transfer.status == "bridged"


async def test_hold_music_from_the_queue_or_the_prompt_when_it_is_broken() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 2.0}]})

    async def music(q: QueueConfig) -> PCM:
        return np.full(8000, 1234, np.int16)

    c.transferer.hold_audio = music
    await c.run(when=_bridged, then=lambda c: c.lines.legs[0].agent_hangs_up())
    assert "请稍候" not in c.synth.rendered  # the recording played, the prompt was never synthesised
    held = [f for f, lab in zip(c.callee_heard.sent_pcm, c.callee_heard.sent, strict=True) if lab == "hold"]
    assert held and int(held[0][0]) == 1234

    c2 = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 2.0}]})

    async def broken(q: QueueConfig) -> PCM:
        raise ModelError("cannot read hold.wav")

    c2.transferer.hold_audio = broken
    o = await c2.run(when=_bridged, then=lambda c: c.lines.legs[0].agent_hangs_up())
    assert "请稍候" in c2.synth.rendered and c2.callee_heard.count("hold") > 0
    assert o.transfer is not None and o.transfer.status == "bridged"


async def test_a_supervisor_listens_in_to_both_sides_and_is_hung_up_with_the_call() -> None:
    c = Call(agents=_agents(), queue=_queue(), plans={"sip:a1@pbx": [{"answer_after": 1.0}]})
    listening: list[asyncio.Task[object]] = []

    def listen(c: Call) -> None:
        listening.append(asyncio.ensure_future(c.transferer.listen_in("fake-1", "sip:boss@pbx")))

    def boss_heard(c: Call) -> bool:
        return len(c.lines.legs) == 2 and c.lines.legs[1].recording.count("listen") > 50

    o = await c.run(
        steps=[(_bridged, listen), (boss_heard, lambda c: c.lines.legs[0].agent_hangs_up())],
    )
    assert o.transfer is not None and o.transfer.status == "bridged"
    boss = c.lines.legs[1]
    assert c.lines.dialled == ["sip:a1@pbx", "sip:boss@pbx"]
    assert c.lines.headers[1] == {"X-Outcall-Listen": "fake-1"}
    assert listening[0].done() and listening[0].result() is boss
    # the mix: the agent's 1 kHz voice plus the callee's side; nothing the boss says is relayed
    assert boss.recording.count("listen") > 50 and boss.recording.count("bridge") == 0
    assert boss.ended and boss.hangups == 1  # hung up when the bridge ended
    with pytest.raises(KeyError):
        await c.transferer.listen_in("fake-1", "sip:boss@pbx")
