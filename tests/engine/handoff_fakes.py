"""Fakes for hand-off tests: agent legs on a virtual clock, a line provider that dials them, and a playout
that remembers what went out (label per frame)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import numpy as np

from engine.audio import FRAME_SAMPLES, PCM
from engine.call.playback import PlaybackHandle, Playout
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.errors import TelephonyError
from engine.events import Ended, LegEvent
from engine.ports import ClassifyContext, LegInfo, Prediction
from tests.engine.fakes import T0, KeywordClassifier


class RecordingPlayout(Playout):
    """A Playout that records the label of every voice frame it hands out (None for silence)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str | None] = []
        self.sent_pcm: list[PCM] = []

    def next_frame(self) -> tuple[PCM, bool]:
        label = None
        if not self.paused:
            for item in self._queue:
                if item.epoch == self.epoch and not item.handle.done:
                    label = item.handle.label
                    break
        frame, voice = super().next_frame()
        self.sent.append(label if voice else None)
        self.sent_pcm.append(frame)
        return frame, voice

    def count(self, label: str) -> int:
        return sum(1 for x in self.sent if x == label)


def agent_voice(amp: int = 5000) -> PCM:
    """One 20 ms frame of the agent's 'voice' (a 1 kHz tone): recognisable after the bridge."""
    return (np.sin(np.arange(FRAME_SAMPLES) * 2 * np.pi * 1000 / 8000) * amp).astype(np.int16)


class FakeAgentLeg:
    """An agent's phone: rings, then answers after `answer_after` s (None: never, until cancelled), or
    fails with `fail`. Its media ticks on the virtual clock whether or not anybody reads frames()."""

    def __init__(
        self,
        clock: VirtualClock,
        uri: str,
        n: int,
        *,
        answer_after: float | None = 1.0,
        fail: Disposition | None = None,
    ) -> None:
        self.clock = clock
        self._info = LegInfo(call_id=f"agent-{n}", target=uri, invited_at=T0)
        self._playout = RecordingPlayout()
        self.answer_after = answer_after
        self.fail = fail
        self._ended = asyncio.Event()
        self._answered = asyncio.Event()
        self._inbound: asyncio.Queue[PCM | None] = asyncio.Queue()
        self._events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._ticker: asyncio.Task[None] | None = None
        self.hangups = 0

    @property
    def info(self) -> LegInfo:
        return self._info

    @property
    def playout(self) -> Playout:
        return self._playout

    @property
    def recording(self) -> RecordingPlayout:
        return self._playout

    async def wait_answered(self) -> None:
        if self.fail is not None:
            await self.clock.sleep(0.5)
            self._end(self.fail, "callee")
            raise TelephonyError("agent busy", disposition=self.fail, sip_code=486)
        if self.answer_after is None:
            await self._ended.wait()
        else:
            ended = asyncio.ensure_future(self._ended.wait())
            slept = asyncio.ensure_future(self.clock.sleep(self.answer_after))
            await asyncio.wait({ended, slept}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            slept.cancel()
        if self._ended.is_set():
            raise TelephonyError("cancelled", disposition=Disposition.CANCELLED)
        self._info.answered_at = T0
        self._answered.set()
        self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            self._playout.next_frame()
            self._inbound.put_nowait(agent_voice())
        self._inbound.put_nowait(None)

    async def frames(self) -> AsyncIterator[PCM]:
        while True:
            f = await self._inbound.get()
            if f is None:
                self._inbound.put_nowait(None)
                return
            yield f

    async def events(self) -> AsyncIterator[LegEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, Ended):
                return

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle:
        return self._playout.play(pcm, label=label)

    def clear(self) -> None:
        self._playout.clear()

    async def send_dtmf(self, digits: str) -> None:
        return None

    def _end(self, disposition: Disposition, by: str) -> None:
        if self._ended.is_set():
            return
        self._info.ended_at = T0
        self._info.disposition = self._info.disposition or disposition
        self._info.hangup_by = self._info.hangup_by or by  # type: ignore[assignment]
        self._ended.set()
        self._events.put_nowait(
            Ended(
                call_id=self._info.call_id, at=0, disposition=disposition, by=self._info.hangup_by or "system"
            )
        )
        if self._ticker is None:
            self._inbound.put_nowait(None)

    async def hangup(self, reason: str = "normal") -> None:
        self.hangups += 1
        answered = self._answered.is_set()
        self._end(Disposition.ANSWERED if answered else Disposition.CANCELLED, "robot")
        await self.wait_ended()

    def agent_hangs_up(self) -> None:
        self._end(Disposition.ANSWERED, "callee")

    async def wait_ended(self) -> LegInfo:
        await self._ended.wait()
        return self._info

    @property
    def ended(self) -> bool:
        return self._ended.is_set()


class FakeLines:
    """LineProvider: dials FakeAgentLegs configured per URI (`plans[uri]` = list of kwargs per attempt)."""

    def __init__(self, clock: VirtualClock, plans: Mapping[str, Sequence[dict[str, object]]]) -> None:
        self.clock = clock
        self.plans = {k: list(v) for k, v in plans.items()}
        self.dialled: list[str] = []
        self.legs: list[FakeAgentLeg] = []
        self.headers: list[Mapping[str, str] | None] = []

    async def originate(
        self,
        target: str,
        *,
        caller_id: str | None = None,
        trunk: str | None = None,
        headers: Mapping[str, str] | None = None,
        ring_timeout: float = 45.0,
        call_id: str | None = None,
    ) -> FakeAgentLeg:
        self.dialled.append(target)
        self.headers.append(headers)
        if target.startswith("bad:"):
            raise ValueError(f"cannot dial {target}")
        plan = self.plans.get(target) or [{}]
        kwargs = plan.pop(0) if len(plan) > 1 else plan[0]
        leg = FakeAgentLeg(self.clock, target, len(self.legs) + 1, **kwargs)  # type: ignore[arg-type]
        self.legs.append(leg)
        return leg


class AgentAskingClassifier(KeywordClassifier):
    """The keyword classifier plus 人工 -> human_agent."""

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]:
        out = await super().classify(texts, context)
        return [
            Prediction(intent="human_agent", confidence=0.95) if "人工" in t else p
            for t, p in zip(texts, out, strict=True)
        ]
