"""Dialplan `voicemail: leave_message`: on a voicemail (words or beep) or a phone assistant, the session
waits for the beep or a quiet line, speaks the plan's message in full, then hangs up; the default plan
hangs up at once. Scripted legs on a virtual clock; the outbound frames are timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dialplans
from engine.audio import FRAME_SAMPLES, PCM, frames_of
from engine.call.amd import MessageCue
from engine.call.session import CallSession, SessionConfig
from engine.call.turns import Endpointer
from engine.clock import VirtualClock
from engine.dialog.loader import parse
from engine.dialog.schema import Dialplan
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from tests.engine.fakes import FixedRecognizer, KeywordClassifier, ScriptedLeg, ToneSynth
from tests.engine.test_amd_acoustic import beep, greeting, noisy, quiet

RATE = 8000
MESSAGE = "您好，这里是{{brand}}，给您留言：您的体验课名额保留到周五，回电请拨{{hotline}}。"


def plan_with(voicemail: dict[str, Any]) -> Dialplan:
    base = dialplans.get("trial-class-zh")
    data = base.model_dump(mode="python", exclude_unset=True, by_alias=True)
    data["voicemail"] = voicemail
    data["variables"] = {**data.get("variables", {}), "hotline": "400-800-1234"}
    return Dialplan.model_validate(data)


class TimedLeg(ScriptedLeg):
    """Plays `audio` from answer, then line silence; keeps the time of every voice frame we sent."""

    def __init__(self, clock: VirtualClock, audio: PCM, *, hang_up_at: float | None = None) -> None:
        super().__init__(clock, [])
        self.audio = audio
        self.sent: list[float] = []
        self.hang_up_at = hang_up_at

    async def frames(self) -> AsyncIterator[PCM]:
        pending = frames_of(self.audio)
        t = 0.0
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            t += 0.02
            _, voice = self._playout.next_frame()
            if voice:
                self.sent.append(round(t, 2))
            if self.hang_up_at is not None and t >= self.hang_up_at:
                await self.callee_hangs_up()
                return
            yield pending.pop(0) if pending else np.zeros(FRAME_SAMPLES, np.int16)


async def run(leg: TimedLeg, plan: Dialplan, heard: str) -> tuple[CallSession, CallOutcome, ToneSynth]:
    synth = ToneSynth()
    session = CallSession(
        leg,
        plan,
        recognizer=FixedRecognizer(heard),
        classifier=KeywordClassifier(),
        synthesizer=synth,
        clock=leg.clock,
        config=SessionConfig(acoustic_amd=True),
    )
    task = asyncio.create_task(session.run())
    for _ in range(4000):  # 80 virtual seconds
        if task.done():
            break
        await leg.clock.advance(0.02)
    assert task.done(), "session did not finish in 80 virtual seconds"
    return session, task.result(), synth


LEAVE = {"action": "leave_message", "say": MESSAGE}
ZH_GREETING = "您好，您拨打的用户暂时无法接听，请在提示音后留言"


def greeting_then_beep(beep_gap_s: float = 0.5, snr_db: float = 15.0, seed: int = 5) -> tuple[PCM, float]:
    """A long greeting, a 1 kHz beep `beep_gap_s` after it, then the mailbox's silence; and the time the
    beep ends."""
    g = greeting(["reply_zh_price", "reply_zh_busy", "reply_zh_no"])
    head = np.concatenate([quiet(0.2), g, quiet(beep_gap_s)])
    bp = beep(1000.0, 0.5)
    # the line noise stops with the mailbox's recording: the energy endpointer of these tests (no VAD)
    # would hear noise that lasts as speech
    audio = noisy(np.concatenate([head, bp, quiet(0.1)]), snr_db, np.random.default_rng(seed))
    return np.concatenate([audio, quiet(12.0)]), (len(head) + len(bp)) / RATE


def spoken(ids: list[str], seed: int) -> PCM:
    """A noisy greeting (no beep), then 10 s of a quiet line."""
    g = noisy(np.concatenate([quiet(0.2), greeting(ids)]), 15.0, np.random.default_rng(seed))
    return np.concatenate([g, quiet(10.0)])


async def test_message_starts_after_the_beep_plays_in_full_then_hangs_up() -> None:
    audio, beep_end = greeting_then_beep()
    leg = TimedLeg(VirtualClock(), audio)
    s, o, synth = await run(leg, plan_with(LEAVE), ZH_GREETING)
    assert o.disposition is Disposition.VOICEMAIL and o.hangup_by == "robot" and o.grade == "E"
    assert s.voicemail_message == "beep"
    assert "voicemail_message" in o.tags
    spoken = [t for t in o.turns if t.speaker == "bot" and t.node == "voicemail"]
    assert len(spoken) == 1 and not spoken[0].interrupted
    text = spoken[0].text
    assert "400-800-1234" in text and "{{" not in text  # variables rendered
    assert synth.rendered[-1] == text
    # the message's first frame goes out after the beep ended (never over it) and soon after
    msg_frames = [t for t in leg.sent if t > beep_end]
    assert msg_frames, leg.sent
    assert beep_end < msg_frames[0] <= beep_end + 1.0
    # all of it: ToneSynth renders 0.05 s per character + 0.2 s
    expected = 0.05 * len(text) + 0.2
    assert abs(len(msg_frames) * 0.02 - expected) <= 0.06
    assert s.amd is not None and s.amd.kind == "voicemail"


async def test_default_plan_hangs_up_without_a_message() -> None:
    audio, beep_end = greeting_then_beep()
    leg = TimedLeg(VirtualClock(), audio)
    s, o, _ = await run(leg, dialplans.get("trial-class-zh"), ZH_GREETING)
    assert o.disposition is Disposition.VOICEMAIL
    assert s.voicemail_message is None and "voicemail_message" not in o.tags
    assert not [t for t in leg.sent if t > beep_end]  # nothing was said after the greeting


async def test_beep_less_mailbox_gets_the_message_once_the_line_is_quiet() -> None:
    """Words decide (请在提示音后留言) but no beep comes: the message starts after quiet_s of silence."""
    g = spoken(["reply_zh_price", "reply_zh_busy"], seed=2)
    leg = TimedLeg(VirtualClock(), g)
    s, o, _ = await run(leg, plan_with({**LEAVE, "quiet_s": 1.5}), ZH_GREETING)
    assert s.voicemail_message == "quiet"
    decided = next(t for t in o.turns if t.intent == "voicemail")
    assert decided.end_s is not None
    first = min(t for t in leg.sent if t > decided.end_s)
    assert first < decided.end_s + 1.5  # not the 8 s beep_wait_s
    assert "voicemail_message" in o.tags
    # the same line with quiet_s 4 s: the message starts 2.5 s later
    leg4 = TimedLeg(VirtualClock(), g)
    s4, _, _ = await run(leg4, plan_with({**LEAVE, "quiet_s": 4.0}), ZH_GREETING)
    assert s4.voicemail_message == "quiet"
    first4 = min(t for t in leg4.sent if t > decided.end_s)
    assert abs(first4 - first - 2.5) <= 0.06


async def test_assistant_gets_the_message_unless_the_plan_says_not() -> None:
    g = spoken(["reply_zh_price", "reply_zh_busy"], seed=4)
    words = "您好，我是机主的智能助理，请问您找他有什么事"
    s, o, _ = await run(TimedLeg(VirtualClock(), g), plan_with(LEAVE), words)
    assert s.amd is not None and s.amd.kind == "assistant" and s.voicemail_message == "quiet"
    assert o.disposition is Disposition.VOICEMAIL and "voicemail_message" in o.tags
    s2, o2, _ = await run(TimedLeg(VirtualClock(), g), plan_with({**LEAVE, "assistants": False}), words)
    assert s2.amd is not None and s2.voicemail_message is None and "voicemail_message" not in o2.tags


async def test_announcement_never_gets_a_message() -> None:
    audio, _ = greeting_then_beep()
    s, o, _ = await run(TimedLeg(VirtualClock(), audio), plan_with(LEAVE), "您拨打的电话已关机")
    assert o.disposition is Disposition.POWERED_OFF and s.voicemail_message is None


async def test_callee_line_ending_mid_message_is_recorded_as_cut() -> None:
    audio, beep_end = greeting_then_beep()
    leg = TimedLeg(VirtualClock(), audio, hang_up_at=beep_end + 1.5)
    s, o, _ = await run(leg, plan_with(LEAVE), ZH_GREETING)
    assert s.voicemail_message == "hung_up" and "voicemail_message" not in o.tags
    spoken = [t for t in o.turns if t.node == "voicemail"]
    assert spoken and spoken[0].interrupted and len(spoken[0].text) < len(MESSAGE)


async def test_no_beep_and_never_quiet_gives_up_waiting_after_beep_wait_s() -> None:
    """A mailbox that keeps talking (music, a long menu): after beep_wait_s the message starts anyway."""
    rng = np.random.default_rng(9)
    first = greeting(["reply_zh_price", "reply_zh_busy"])
    talk = np.concatenate([greeting(["reply_zh_price", "reply_zh_busy", "reply_zh_no"])] * 3)
    # noise only over the speech: these tests' energy endpointer (no VAD) hears lasting noise as speech
    line = [quiet(0.2), noisy(first, 15.0, rng), quiet(0.8), noisy(talk, 15.0, rng), quiet(5.0)]
    leg = TimedLeg(VirtualClock(), np.concatenate(line))
    s, o, _ = await run(leg, plan_with({**LEAVE, "beep_wait_s": 3.0, "quiet_s": 4.0}), ZH_GREETING)
    decided = next(t for t in o.turns if t.intent == "voicemail")
    msg = next(t for t in o.turns if t.node == "voicemail")
    assert decided.end_s is not None and abs(msg.start_s - (decided.end_s + 3.0)) <= 0.1
    assert s.voicemail_message == "timeout"


def test_cue_beep_after_the_greeting_and_quiet_line() -> None:
    ep, cue = Endpointer(), MessageCue(quiet_s=1.0)
    audio, _ = greeting_then_beep(beep_gap_s=0.4)
    states = []
    for f in frames_of(audio[: int(RATE * 9)]):
        ep.feed(f)
        cue.feed(f, ep.frame_speech)
        states.append(cue.ready)
    assert states[-1] == "beep"
    assert None in states  # not ready while the greeting plays


def test_plan_validation_names_the_missing_message() -> None:
    yaml_text = dialplans.resolve("trial-class-zh").read_text(encoding="utf-8")
    plan, problems = parse(yaml_text + "\nvoicemail:\n  action: leave_message\n", "plan.yaml")
    assert plan is None
    assert any("voicemail" in str(p) and "needs the message" in str(p) for p in problems), problems


@pytest.mark.parametrize("name", dialplans.names())
def test_shipped_plans_load_with_a_voicemail_section(name: str) -> None:
    assert dialplans.get(name).voicemail.action in ("hangup", "leave_message")


def test_missing_recorded_message_is_named_and_the_plan_still_loads(tmp_path: Path) -> None:
    yaml_text = dialplans.resolve("trial-class-zh").read_text(encoding="utf-8")
    text = yaml_text + "\nvoicemail:\n  action: leave_message\n  wav: vm/message.wav\n"
    plan, problems = parse(text, "plan.yaml", base_dir=tmp_path)
    assert plan is not None and plan.voicemail.wav == "vm/message.wav"  # the rest of the plan is intact
    errs = [p for p in problems if p.is_error]
    assert len(errs) == 1 and "recorded message 'vm/message.wav' not found" in str(errs[0]), errs
    wav_line = text.splitlines().index("  wav: vm/message.wav") + 1
    assert errs[0].line == wav_line, (errs[0], wav_line)  # the line to fix
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "message.wav").write_bytes(b"RIFF")
    _, problems = parse(text, "plan.yaml", base_dir=tmp_path)
    assert not [p for p in problems if p.is_error]
