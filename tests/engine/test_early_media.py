"""Early media (before answer): ringback tone and 彩铃 music are told apart from speech, never heard as the
callee after answer; a carrier announcement's words give the disposition of an attempt that fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

import dialplans
from engine.audio import FRAME_SAMPLES, PCM, frames_of, ulaw_decode, ulaw_encode
from engine.call.early import EarlyMediaMonitor, Segment
from engine.call.session import CallSession, SessionConfig
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.errors import TelephonyError
from engine.outcome import CallOutcome
from engine.ports import Transcript
from tests.engine.fakes import T0, KeywordClassifier, ScriptedLeg, ToneSynth
from tests.engine.test_beep import line, melody, ringback
from tests.fixtures.audio.corpus import labels, load
from tests.fixtures.audio.make_corpus import ringback_music

RATE = 8000


def segments(pcm: PCM) -> list[Segment]:
    mon = EarlyMediaMonitor()
    return [s for f in frames_of(np.concatenate([pcm, np.zeros(RATE, np.int16)])) if (s := mon.feed(f))]


def kinds(pcm: PCM) -> list[str]:
    return [s.kind for s in segments(pcm)]


@pytest.mark.parametrize("degraded", [False, True])
def test_every_corpus_speech_clip_is_speech_and_the_music_is_music(degraded: bool) -> None:
    for clip in labels():
        got = set(kinds(load(clip["id"], degraded=degraded)))
        want = "music" if clip["class"] == "music" else "speech"
        assert got == {want}, (clip["id"], degraded, got)


def test_ringback_is_tone_and_tunes_are_music_not_speech() -> None:
    rng = np.random.default_rng(5)
    for snr in (10.0, 20.0):
        cn = line(ringback(3), snr_db=snr, rng=rng, signal_power=3500.0**2)
        assert set(kinds(cn)) == {"tone"}
        assert set(kinds(ulaw_decode(ulaw_encode(cn)))) == {"tone"}
        us = line(ringback(2, on_s=2.0, hz=(440.0, 480.0)), snr_db=snr, rng=rng, signal_power=3500.0**2)
        assert "speech" not in kinds(us)
        for harmonics in (True, False):
            for decay in (0.0, 3.0, 8.0):
                x = melody(rng, harmonics=harmonics, decay=decay)
                segs = segments(line(x, snr_db=snr, rng=rng, signal_power=3e7))
                # what is long enough to tell is never speech (at 10 dB a tune that plays from the first
                # frame is mostly below the floor; shorter pieces may go to the recogniser)
                assert [s for s in segs if s.kind == "speech" and s.seconds >= 1.5] == [], (snr, harmonics)
                if snr >= 15.0:
                    assert "speech" not in [s.kind for s in segs], (snr, harmonics, decay)
    assert set(kinds(ringback_music(12.0))) == {"music"}


# --- in a CallSession ---------------------------------------------------------------------------------


class EarlyLeg(ScriptedLeg):
    """Plays `early` before answer (from the invite on), then answers (or fails with `fail_code`), then
    plays `after`: one stream read through whatever frames() iterator is current, as a real leg's queue."""

    def __init__(
        self, clock: VirtualClock, early: PCM, after: PCM, *, fail: Disposition | None = None
    ) -> None:
        super().__init__(clock, [])
        self.early = frames_of(early)
        self.after = frames_of(after)
        self.fail_with = fail
        self._answered = asyncio.Event()
        self.heard_before_answer = 0

    async def wait_answered(self) -> None:
        await self._answered.wait()
        if self.fail_with is not None:
            self._info.disposition = self.fail_with
            self._info.sip_code = 480
            self._info.ended_at = T0
            self._ended.set()
            raise TelephonyError("temporarily unavailable", disposition=self.fail_with, sip_code=480)
        self._info.answered_at = T0

    async def hangup(self, reason: str = "normal") -> None:
        if not self._answered.is_set():  # CANCEL
            self._info.disposition = Disposition.CANCELLED
            self._info.ended_at = T0
            self._ended.set()
            self._answered.set()
            return
        await super().hangup(reason)

    async def frames(self) -> AsyncIterator[PCM]:
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            self._playout.next_frame()
            if self.early:
                self.heard_before_answer += 1
                yield self.early.pop(0)
                if not self.early:
                    self._answered.set()
                continue
            yield self.after.pop(0) if self.after else np.zeros(FRAME_SAMPLES, np.int16)


class Words:
    """A recogniser that hears `text` in anything longer than `min_s` (shorter: nothing)."""

    name = "fake-asr"

    def __init__(self, text: str, min_s: float = 0.0) -> None:
        self.text, self.min_s = text, min_s
        self.heard: list[float] = []

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        self.heard.append(len(pcm) / RATE)
        return Transcript(text=self.text if len(pcm) / RATE > self.min_s else "", engine=self.name)


async def run(leg: EarlyLeg, rec: Words) -> tuple[CallSession, CallOutcome]:
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=rec,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        clock=leg.clock,
        config=SessionConfig(),
    )
    task = asyncio.create_task(session.run())
    for _ in range(4000):
        if task.done():
            break
        await leg.clock.advance(0.02)
    assert task.done()
    return session, task.result()


def quiet(seconds: float) -> PCM:
    return np.zeros(round(seconds * RATE), np.int16)


async def test_ringback_and_music_before_answer_are_not_the_callee() -> None:
    """8 s of ringback + 彩铃 before a human answers with 喂: none of it is transcribed or heard after
    answer; the first callee turn is the 喂, and no machine is detected."""
    rng = np.random.default_rng(3)
    early = np.concatenate(
        [line(ringback(1), snr_db=20.0, rng=rng, signal_power=3500.0**2), ringback_music(6.0), quiet(0.1)]
    )
    wei = load("bc_zh_dui")  # a short real answer
    leg = EarlyLeg(VirtualClock(), early, np.concatenate([quiet(0.3), wei]))
    rec = Words("喂")
    s, o = await run(leg, rec)
    assert leg.heard_before_answer == len(frames_of(early))
    assert s.early_media is not None and s.early_media.kind == "music" and s.early_media.ringback == 1
    assert s.early_media.speech_s == 0.0
    assert s.amd is None and o.disposition is not Disposition.VOICEMAIL
    callee = [t for t in o.turns if t.speaker == "callee"]
    assert callee and callee[0].text == "喂" and callee[0].start_s < 1.5
    assert all(d < 2.5 for d in rec.heard)  # nothing of the early media reached the recogniser


async def test_announcement_in_early_media_gives_the_failed_attempt_its_disposition() -> None:
    """183 + 您拨打的电话已关机, then 480: POWERED_OFF from the words, not UNREACHABLE from the code."""
    leg = EarlyLeg(
        VirtualClock(),
        np.concatenate([load("ann_powered_off", degraded=True), quiet(1.0)]),
        quiet(1.0),
        fail=Disposition.UNREACHABLE,
    )
    s, o = await run(leg, Words("您拨打的电话已关机"))
    assert o.disposition is Disposition.POWERED_OFF and o.hangup_by == "robot"
    assert s.amd is not None and s.amd.kind == "announcement"
    assert [t.intent for t in o.turns] == ["announcement"]


async def test_the_final_response_ending_the_announcement_still_gets_its_words() -> None:
    """480 comes right as the announcement ends (before the segment's 0.6 s of quiet): still transcribed;
    a vague final response (UNREACHABLE) gives way to the words, a specific one (BUSY) stands."""
    for fail, want in (
        (Disposition.UNREACHABLE, Disposition.POWERED_OFF),
        (Disposition.BUSY, Disposition.BUSY),
    ):
        leg = EarlyLeg(VirtualClock(), load("ann_powered_off", degraded=True), quiet(1.0), fail=fail)
        rec = Words("您拨打的电话已关机")
        s, o = await run(leg, rec)
        assert rec.heard and o.disposition is want, (fail, o.disposition)
        assert s.amd is not None and s.amd.disposition is Disposition.POWERED_OFF
        assert o.hangup_by != "robot"  # the carrier ended it, not our CANCEL


async def test_announcement_heard_while_still_ringing_cancels_the_attempt() -> None:
    """The words decide before the carrier ends the attempt: we cancel it."""
    early = np.concatenate([load("ann_suspended"), quiet(30.0)])
    leg = EarlyLeg(VirtualClock(), early, quiet(1.0))
    _, o = await run(leg, Words("您拨打的电话已停机"))
    assert o.disposition is Disposition.SUSPENDED and leg.info.disposition is Disposition.CANCELLED
    assert leg.heard_before_answer < len(frames_of(early)) // 2


async def test_music_with_words_the_rules_do_not_know_decides_nothing() -> None:
    """Speech-like early media whose words are not an announcement (a song's lyrics): the code decides."""
    rng = np.random.default_rng(4)
    early = np.concatenate([load("reply_zh_price"), quiet(1.0), melody(rng, harmonics=True, decay=0.0)])
    leg = EarlyLeg(VirtualClock(), early, quiet(1.0), fail=Disposition.UNREACHABLE)
    s, o = await run(leg, Words("这个课程多少钱"))
    assert o.disposition is Disposition.UNREACHABLE and s.amd is None
    assert s.early_media is not None and s.early_media.speech_s > 0 and s.early_media.music_s > 0
