"""Fakes for pure engine tests: a scripted call leg on a virtual clock, and scripted models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import numpy as np

from engine.audio import FRAME_SAMPLES, PCM
from engine.call.playback import PlaybackHandle, Playout
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.errors import ModelError, TelephonyError
from engine.events import Ended, LegEvent
from engine.ports import ClassifyContext, LegInfo, Prediction, Transcript

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def tone(seconds: float, amp: int = 8000, hz: float = 440.0) -> PCM:
    n = int(seconds * 8000)
    return (np.sin(np.arange(n) * 2 * np.pi * hz / 8000) * amp).astype(np.int16)


class ScriptedLeg:
    """Answers at once; after each bot utterance finishes playing and `gap_s` passes, the callee 'speaks'
    the next reply (a tone whose length encodes which reply it is). None in the script means silence."""

    def __init__(
        self,
        clock: VirtualClock,
        replies: Sequence[str | None],
        *,
        fail: Disposition | None = None,
        gap_s: float = 0.5,
        at_answer: str | None = None,
        timed: Sequence[tuple[float, str]] = (),
    ) -> None:
        self.clock = clock
        self.replies = list(replies)
        self.gap_s = gap_s
        self._info = LegInfo(call_id="fake-1", target="sip:callee@test", invited_at=T0)
        self._playout = Playout()
        self._events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._ended = asyncio.Event()
        self.fail = fail
        self.heard: list[str] = []
        self.reply_lengths: dict[int, str] = {}
        self.at_answer = at_answer
        self.timed = sorted(timed)

    @property
    def info(self) -> LegInfo:
        return self._info

    @property
    def playout(self) -> Playout:
        return self._playout

    async def wait_answered(self) -> None:
        if self.fail is not None:
            self._info.disposition = self.fail
            self._info.sip_code = 486
            self._info.ended_at = T0
            self._ended.set()
            raise TelephonyError("busy", disposition=self.fail, sip_code=486)
        self._info.answered_at = T0

    async def events(self) -> AsyncIterator[LegEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, Ended):
                return

    async def frames(self) -> AsyncIterator[PCM]:
        pending: list[PCM] = []
        if self.at_answer is not None:
            self.reply_lengths[1] = self.at_answer
            audio = tone(0.6)
            pending = [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]
        silent_since: float | None = None
        was_busy = False
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            self._playout.next_frame()
            busy = self._playout.busy
            if was_busy and not busy:
                silent_since = self.clock.monotonic()
            elif busy:
                silent_since = None
            was_busy = busy
            if (
                silent_since is not None
                and not pending
                and self.clock.monotonic() - silent_since >= self.gap_s
                and self.replies
            ):
                silent_since = None
                reply = self.replies.pop(0)
                if reply is not None:
                    idx = len(self.reply_lengths) + 1
                    self.reply_lengths[idx] = reply
                    audio = tone(0.2 * idx + 0.4)
                    pending = [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]
            if self.timed and not pending and self.clock.monotonic() >= self.timed[0][0]:
                _, text = self.timed.pop(0)
                idx = len(self.reply_lengths) + 1
                self.reply_lengths[idx] = text
                audio = tone(0.2 * idx + 0.4)
                pending = [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]
            if pending:
                yield pending.pop(0)
            else:
                yield np.zeros(FRAME_SAMPLES, np.int16)

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle:
        return self._playout.play(pcm, label=label)

    def clear(self) -> None:
        self._playout.clear()

    async def send_dtmf(self, digits: str) -> None:
        return None

    async def hangup(self, reason: str = "normal") -> None:
        if self._ended.is_set():
            return
        self._info.ended_at = T0
        self._info.hangup_by = self._info.hangup_by or "robot"
        self._info.disposition = self._info.disposition or Disposition.ANSWERED
        self._ended.set()
        await self._events.put(Ended(call_id="fake-1", at=0, disposition=Disposition.ANSWERED, by="robot"))

    async def callee_hangs_up(self) -> None:
        self._info.hangup_by = "callee"
        self._info.ended_at = T0
        self._ended.set()
        await self._events.put(Ended(call_id="fake-1", at=0, disposition=Disposition.ANSWERED, by="callee"))

    async def wait_ended(self) -> LegInfo:
        await self._ended.wait()
        return self._info


class LengthRecognizer:
    """Maps an utterance's length back to the scripted reply text."""

    name = "fake-asr"

    def __init__(self, leg: ScriptedLeg, *, crash: bool = False) -> None:
        self.leg = leg
        self.crash = crash

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        if self.crash:
            raise ModelError("decoder exploded")
        seconds = len(pcm) / 8000
        best = min(self.leg.reply_lengths, key=lambda i: abs((0.2 * i + 0.4) - seconds))
        return Transcript(text=self.leg.reply_lengths[best], engine=self.name)


class FixedRecognizer:
    """Hears the same words in everything; counts the utterances it was asked about."""

    name = "fake-asr"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        self.calls += 1
        return Transcript(text=self.text, engine=self.name)


class KeywordClassifier:
    name = "fake-nlu"

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]:
        table = {"好": "affirm", "多少钱": "ask_price", "不": "not_interested", "别再打": "stop_calling"}
        out = []
        for t in texts:
            intent = next((v for k, v in table.items() if k in t), "other")
            out.append(Prediction(intent=intent, confidence=0.9))
        return out


class ToneSynth:
    name = "fake-tts"

    def __init__(self) -> None:
        self.rendered: list[str] = []

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        self.rendered.append(text)
        # not the callee's 440 Hz: the echo guard would rightly take a copy of our own tone for echo
        return tone(0.05 * len(text) + 0.2, amp=3000, hz=310.0)
