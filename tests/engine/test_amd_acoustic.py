"""Greeting cadence and the acoustic voicemail decision (beep after a long greeting), alone on corpus and
generated audio, and inside a CallSession: an unrecognised greeting + beep ends as voicemail, a human's
喂 is not delayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

import dialplans
from engine.audio import FRAME_SAMPLES, PCM, frames_of, ulaw_decode, ulaw_encode
from engine.call.amd import AcousticAmd, AmdDecision, Cadence
from engine.call.session import CallSession, SessionConfig
from engine.call.turns import Endpointer
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from engine.ports import Recognizer
from tests.engine.fakes import FixedRecognizer, KeywordClassifier, LengthRecognizer, ScriptedLeg, ToneSynth
from tests.fixtures.audio.corpus import labels, load
from tests.fixtures.audio.make_corpus import BEEP_AFTER

RATE = 8000


def cadence_of(pattern: Sequence[tuple[bool, float]]) -> Cadence:
    c = Cadence()
    for speech, seconds in pattern:
        for _ in range(round(seconds / 0.02)):
            c.feed(speech)
    return c


def test_cadence_short_greeting_then_waiting_is_human() -> None:
    c = cadence_of([(False, 0.4), (True, 0.5), (False, 2.0)])
    assert c.verdict == "human" and not c.machine_likely


def test_cadence_long_greeting_with_short_pauses_is_machine_while_it_goes_on() -> None:
    c = Cadence()
    verdict_at = None
    for i, (speech, seconds) in enumerate([(False, 0.2)] + [(True, 0.9), (False, 0.4)] * 5):
        for _ in range(round(seconds / 0.02)):
            if c.feed(speech) is not None:
                verdict_at = (i, c.span_s)
    assert c.machine_likely and verdict_at is not None
    assert abs(verdict_at[1] - 3.5) < 0.03  # decided as soon as 3.5 s of greeting had gone by


def test_cadence_in_between_is_unknown_and_a_long_pause_ends_the_greeting() -> None:
    assert cadence_of([(True, 2.5), (False, 1.0)]).verdict == "unknown"
    # 喂 ... (a pause a human makes) ... 喂? — the first greeting was already a human's
    assert cadence_of([(True, 0.4), (False, 1.0), (True, 4.0)]).verdict == "human"


def run_amd(pcm: PCM, tail_s: float = 2.0) -> AcousticAmd:
    """Frames through the Endpointer and the detector, as the session does; the line's own noise (its
    first 0.25 s) goes on after the clip."""
    amd, ep = AcousticAmd(), Endpointer()
    noise = pcm[:2000]
    tail = np.tile(noise, int(tail_s * RATE / len(noise)) + 1)[: int(tail_s * RATE)]
    for f in frames_of(np.concatenate([pcm, tail])):
        ep.feed(f)
        amd.feed(f, ep.frame_speech)
    return amd


@pytest.mark.parametrize("degraded", [False, True])
def test_corpus_cadence_and_decisions(degraded: bool) -> None:
    """Short answers are human by cadence; no human clip is machine; only the greetings followed by a beep
    give a decision."""
    for clip in labels():
        amd = run_amd(load(clip["id"], degraded=degraded))
        cad = amd.cadence
        if clip["class"] == "backchannel":
            assert cad.verdict == "human", (clip["id"], cad.span_s)
        if clip["class"] in ("reply", "backchannel", "noise"):
            assert not cad.machine_likely, (clip["id"], cad.span_s)
        if clip["class"] in ("voicemail", "assistant"):
            assert cad.verdict != "human" and cad.span_s > 3.0, clip["id"]
        want = clip["id"] in BEEP_AFTER
        assert (amd.decision is not None) == want, (clip["id"], amd.decision)
        if amd.decision is not None:
            assert amd.decision.disposition is Disposition.VOICEMAIL


def beep(hz: float, seconds: float, amp: float = 8000.0) -> PCM:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def quiet(seconds: float) -> PCM:
    return np.zeros(round(seconds * RATE), np.int16)


def noisy(pcm: PCM, snr_db: float, rng: np.random.Generator) -> PCM:
    active = pcm[np.abs(pcm) > 200].astype(np.float64)
    power = float(np.mean(active**2))
    x = pcm.astype(np.float64) + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(pcm))
    return ulaw_decode(ulaw_encode(np.clip(np.round(x), -32768, 32767).astype(np.int16)))


def greeting(ids: Sequence[str]) -> PCM:
    """Speech clips joined with short pauses: an unrecognisable greeting stands in for any language."""
    parts: list[PCM] = []
    for cid in ids:
        parts += [load(cid)[2000:-2000], quiet(0.3)]
    return np.concatenate(parts)


@pytest.mark.parametrize("hz", [450.0, 850.0, 1000.0, 1400.0, 1900.0])
def test_any_long_greeting_then_a_beep_is_voicemail(hz: float) -> None:
    rng = np.random.default_rng(int(hz))
    g = greeting(["reply_en_yes", "reply_en_no"])  # ~4 s of speech the text rules do not know
    for gap, seconds, snr in ((0.3, 0.25, 12.0), (1.0, 0.6, 20.0), (2.0, 1.2, 15.0)):
        pcm = np.concatenate([quiet(0.3), g, quiet(gap), beep(hz, seconds), quiet(0.5)])
        amd = run_amd(noisy(pcm, snr, rng))
        if hz == 450.0 and seconds >= 0.7:  # a 1 s 450 Hz tone is ringback-like: not a beep
            assert amd.decision is None
            continue
        assert amd.decision is not None, (hz, gap, seconds, snr, amd.events)
        assert f"beep {hz:.0f} Hz" in amd.decision.pattern


def test_short_human_greeting_then_a_tone_is_not_voicemail() -> None:
    rng = np.random.default_rng(3)
    for cid in ("bc_zh_dui", "bc_en_ok", "reply_zh_no"):
        pcm = np.concatenate([load(cid), quiet(1.0), beep(1000.0, 0.5), quiet(0.5)])
        amd = run_amd(noisy(pcm, 15.0, rng))
        assert any(e.kind == "beep" for e in amd.events)  # the tone is there ...
        assert amd.decision is None  # ... but a human answered


def test_a_beep_long_after_the_greeting_is_not_its_beep() -> None:
    pcm = np.concatenate([quiet(0.3), greeting(["reply_en_yes", "reply_en_no"]), quiet(4.0), beep(1000, 0.5)])
    assert run_amd(pcm).decision is None


# --- in a CallSession ---------------------------------------------------------------------------------


class GreetingLeg(ScriptedLeg):
    """Plays `audio` from the moment of answer, then line silence."""

    def __init__(self, clock: VirtualClock, audio: PCM) -> None:
        super().__init__(clock, [])
        self.audio = audio

    async def frames(self) -> AsyncIterator[PCM]:
        pending = frames_of(self.audio)
        while not self._ended.is_set():
            await self.clock.sleep(0.02)
            self._playout.next_frame()
            yield pending.pop(0) if pending else np.zeros(FRAME_SAMPLES, np.int16)


async def run_session(
    leg: ScriptedLeg, recognizer: Recognizer, *, acoustic: bool = True
) -> tuple[CallSession, CallOutcome]:
    clock = leg.clock
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=recognizer,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        clock=clock,
        config=SessionConfig(acoustic_amd=acoustic),
    )
    task = asyncio.create_task(session.run())
    for _ in range(3000):  # 60 virtual seconds
        if task.done():
            break
        await clock.advance(0.02)
    assert task.done(), "session did not finish in 60 virtual seconds"
    return session, task.result()


SPANISH = "Hola, soy Pedro, ahora no puedo atender, deje su mensaje"


async def test_unrecognised_greeting_and_beep_end_the_call_as_voicemail() -> None:
    """vm_zh (a real greeting + beep from the corpus) heard as words the rules do not know."""
    audio = load("vm_zh", degraded=True)
    s, o = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer(SPANISH))
    assert o.disposition is Disposition.VOICEMAIL and o.hangup_by == "robot"
    assert isinstance(s.amd, AmdDecision) and s.amd.pattern.startswith("beep 1000 Hz")
    assert o.grade == "E"
    decided = [t for t in o.turns if t.speaker == "callee" and t.intent == "voicemail"]
    assert len(decided) == 1 and decided[0].text == SPANISH
    # the words (greeting + beep: one utterance to the endpointer) end after the beep, are heard and
    # decide nothing: the beep does, then, within acoustic_wait_s (2 s) of the beep
    beep_end = (len(audio) - 2400 - 1600) / RATE  # the clip ends with 0.2 s + 0.3 s after the beep
    assert decided[0].end_s is not None and beep_end < decided[0].end_s <= beep_end + 2.0


async def test_generated_foreign_greeting_and_beep_is_voicemail_without_the_detector_it_is_not() -> None:
    rng = np.random.default_rng(11)
    g = greeting(["reply_en_price", "reply_en_yes", "reply_en_no"])
    audio = noisy(np.concatenate([quiet(0.2), g, quiet(0.6), beep(1400.0, 0.4), quiet(3.0)]), 15.0, rng)
    _, on = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer(SPANISH))
    assert on.disposition is Disposition.VOICEMAIL
    off_s, off = await run_session(
        GreetingLeg(VirtualClock(), audio), FixedRecognizer(SPANISH), acoustic=False
    )
    assert off.disposition is not Disposition.VOICEMAIL and off_s.amd is None


async def test_text_rules_still_decide_when_the_words_are_recognised() -> None:
    """An announcement's words give its disposition; the acoustic detector does not overrule them."""
    audio = np.concatenate([load("vm_zh"), quiet(1.0)])
    s, o = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer("您拨打的电话已关机"))
    assert o.disposition is Disposition.POWERED_OFF
    assert s.amd is not None and not s.amd.pattern.startswith("beep")


async def test_beep_alone_decides_when_no_words_come() -> None:
    """The recogniser hears nothing: the beep decides acoustic_wait_s after it."""
    audio = np.concatenate([load("vm_en", degraded=True), quiet(3.0)])
    s, o = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer(""))
    assert o.disposition is Disposition.VOICEMAIL
    assert s.amd is not None and s.amd.pattern.startswith("beep 1000 Hz")
    decided = [t for t in o.turns if t.intent == "voicemail"]
    beep_end = (len(audio) - 3 * RATE - 2400 - 1600) / RATE
    assert decided[0].end_s is not None and abs(decided[0].end_s - (beep_end + 2.0)) < 0.1


async def test_long_greeting_without_a_beep_is_left_to_the_dialog() -> None:
    audio = np.concatenate([quiet(0.2), greeting(["reply_en_price", "reply_en_yes", "reply_en_no"])])
    s, o = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer(SPANISH))
    assert s.amd is None and o.disposition is not Disposition.VOICEMAIL


async def test_human_wei_is_not_delayed() -> None:
    """The same call with and without the acoustic detector: same turns at the same times, and our
    greeting starts at answer."""
    results = []
    for acoustic in (True, False):
        leg = ScriptedLeg(VirtualClock(), ["好的可以"], at_answer="喂")
        s, o = await run_session(leg, LengthRecognizer(leg), acoustic=acoustic)
        results.append((s, o))
    with_amd, without = (o for _, o in results)
    assert with_amd.disposition is Disposition.ANSWERED and results[0][0].amd is None
    assert [t.model_dump() for t in with_amd.turns] == [t.model_dump() for t in without.turns]
    assert with_amd.turns[0].speaker == "bot" and with_amd.turns[0].start_s == 0.0
    assert ("喂", "callee") in [(t.text, t.speaker) for t in with_amd.turns]


async def test_human_real_greeting_then_a_notification_tone_goes_on() -> None:
    """A real short answer (对), a pause, then a beep-like tone: still a human conversation."""
    audio = np.concatenate([load("bc_zh_dui"), quiet(1.2), beep(1000.0, 0.3), quiet(0.5)])
    s, o = await run_session(GreetingLeg(VirtualClock(), audio), FixedRecognizer("喂，哪位"))
    assert s.amd is None and o.disposition is not Disposition.VOICEMAIL
