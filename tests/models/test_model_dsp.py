from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from models.dsp import float_to_pcm, pcm_to_float, resample_float, resample_pcm


def _tone(freq: float, rate: int, seconds: float = 0.5) -> npt.NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def _rms(x: npt.NDArray[np.floating[Any]]) -> float:
    core = x[len(x) // 10 : -len(x) // 10]
    return float(np.sqrt(np.mean(core.astype(np.float64) ** 2)))


def test_lengths() -> None:
    assert len(resample_float(np.zeros(24000), 24000, 8000)) == 8000
    assert len(resample_float(np.zeros(8000), 8000, 16000)) == 16000
    assert len(resample_pcm(np.zeros(8000, dtype=np.int16), 8000, 8000)) == 8000


def test_passband_kept_and_alias_removed_24k_to_8k() -> None:
    keep = resample_float(_tone(1000, 24000), 24000, 8000)
    assert abs(_rms(keep) - 0.5 / np.sqrt(2)) < 0.02
    # 6 kHz would alias to 2 kHz at 8 kHz: the low-pass must remove it
    alias = resample_float(_tone(6000, 24000), 24000, 8000)
    assert _rms(alias) < 0.01


def test_upsample_8k_to_16k_keeps_tone() -> None:
    up = resample_float(_tone(1000, 8000), 8000, 16000)
    assert abs(_rms(up) - 0.5 / np.sqrt(2)) < 0.02


def test_pcm_float_round_trip() -> None:
    pcm = np.array([0, 100, -100, 32767, -32768], dtype=np.int16)
    back = float_to_pcm(pcm_to_float(pcm))
    assert np.max(np.abs(back.astype(int) - pcm.astype(int))) <= 1


def test_awkward_ratio_22050_to_8000() -> None:
    out = resample_float(_tone(1000, 22050), 22050, 8000)
    assert len(out) == 4000
    assert abs(_rms(out) - 0.5 / np.sqrt(2)) < 0.02
    assert _rms(resample_float(_tone(6000, 22050), 22050, 8000)) < 0.01
