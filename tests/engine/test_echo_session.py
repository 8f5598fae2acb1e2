"""A whole call on a line that echoes our prompts back (real espeak-ng speech, virtual clock): no false
barge-in; the callee talking over the prompt still interrupts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

import dialplans
from engine.audio import FRAME_SAMPLES, PCM, ulaw_decode, ulaw_encode
from engine.call.session import CallSession, SessionConfig
from engine.clock import VirtualClock
from engine.outcome import CallOutcome
from tests.engine.fakes import FixedRecognizer, KeywordClassifier, ScriptedLeg
from tests.speech_audio import speech


class EchoLeg(ScriptedLeg):
    """Returns what we send, `gain_db` down and `delay_ms` late, through µ-law; optionally the callee
    says `callee` starting at `callee_at_s`. Never replies otherwise (each Listen ends in no-input)."""

    def __init__(
        self,
        clock: VirtualClock,
        *,
        delay_ms: int,
        gain_db: float,
        callee: PCM | None = None,
        callee_at_s: float = 0.0,
    ) -> None:
        super().__init__(clock, [])
        self.delay = delay_ms * 8
        self.gain = 10 ** (gain_db / 20)
        self.callee = callee
        self.callee_at = int(callee_at_s * 8000)

    async def frames(self) -> AsyncIterator[PCM]:
        sent = np.zeros(0)
        pos = 0
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            frame, _ = self._playout.next_frame()
            sent = np.concatenate([sent, frame.astype(np.float64)])
            lo = pos - self.delay
            rx = np.zeros(FRAME_SAMPLES)
            for i in range(FRAME_SAMPLES):
                j = lo + i
                if 0 <= j < len(sent):
                    rx[i] = sent[j] * self.gain
            if self.callee is not None:
                k = pos - self.callee_at
                if -FRAME_SAMPLES < k < len(self.callee):
                    for i in range(FRAME_SAMPLES):
                        if 0 <= k + i < len(self.callee):
                            rx[i] += self.callee[k + i]
            pos += FRAME_SAMPLES
            yield ulaw_decode(ulaw_encode(np.clip(np.round(rx), -32768, 32767).astype(np.int16)))


_LINES = (
    "Hello, this is the assistant of the Qiming school.",
    "We have a free coding class for children this Saturday morning. Would you like to join?",
    "Sorry, I did not catch that. Are you interested?",
    "Thank you for your time, goodbye.",
)


class SpeechSynth:
    """Each prompt spoken as a fixed English sentence (espeak-ng cannot speak Mandarin intelligibly)."""

    name = "espeak-test"

    def __init__(self) -> None:
        self.n = 0

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        line = _LINES[min(self.n, len(_LINES) - 1)]
        self.n += 1
        return speech(line, voice="en-us", level_dbfs=-18.0)


async def _call(leg: EchoLeg, clock: VirtualClock, rec: FixedRecognizer, *, echo: bool) -> CallOutcome:
    cfg = SessionConfig() if echo else SessionConfig(echo=None)
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=rec,
        classifier=KeywordClassifier(),
        synthesizer=SpeechSynth(),
        clock=clock,
        config=cfg,
    )
    task = asyncio.create_task(session.run())
    for _ in range(1500):  # 30 virtual seconds, then the callee hangs up
        if task.done():
            break
        await clock.advance(0.02)
    if not task.done():
        await leg.callee_hangs_up()
        for _ in range(500):
            if task.done():
                break
            await clock.advance(0.02)
    assert task.done()
    return task.result()


async def test_echoed_prompts_never_barge_in() -> None:
    clock = VirtualClock()
    leg = EchoLeg(clock, delay_ms=180, gain_db=-6)
    rec = FixedRecognizer("not interested")
    o = await _call(leg, clock, rec, echo=True)
    bot = [t for t in o.turns if t.speaker == "bot"]
    assert len(bot) >= 3 and not any(t.interrupted for t in bot)
    assert [t for t in o.turns if t.speaker == "callee"] == []
    assert rec.calls == 0  # nothing was even sent to ASR


async def test_without_the_guard_the_echo_interrupts_the_prompt() -> None:
    clock = VirtualClock()
    leg = EchoLeg(clock, delay_ms=180, gain_db=-6)
    rec = FixedRecognizer("not interested")
    o = await _call(leg, clock, rec, echo=False)
    assert rec.calls > 0
    assert any(t.interrupted for t in o.turns if t.speaker == "bot")


async def test_callee_over_the_echo_interrupts_the_greeting() -> None:
    clock = VirtualClock()
    callee = speech("No thanks, I am not interested at all.", voice="en-us+f3", level_dbfs=-24.0)
    # the disclosure (not interruptible) plays 0..3.2 s, the greeting from 3.2 s: the callee cuts in at 4.5 s
    leg = EchoLeg(clock, delay_ms=180, gain_db=-6, callee=callee, callee_at_s=4.5)
    rec = FixedRecognizer("不需要")
    o = await _call(leg, clock, rec, echo=True)
    greet = next(t for t in o.turns if t.speaker == "bot" and t.node == "greet")
    assert greet.interrupted, o.turns
    heard = [t for t in o.turns if t.speaker == "callee"]
    assert [t.text for t in heard] == ["不需要"] and 4.5 <= heard[0].start_s <= 5.0
    assert rec.calls == 1
