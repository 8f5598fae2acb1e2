"""Small signal helpers for the model adapters (numpy only).

engine.audio.resample is fine for frames; model I/O wants a proper anti-alias filter (24 kHz TTS -> 8 kHz
telephone audio, 8 kHz telephone audio -> 16 kHz for Whisper), so this is a windowed-sinc polyphase-free
rational resampler (upsample by L, low-pass, downsample by M). Speech lengths make the direct form cheap.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
import numpy.typing as npt

from engine.audio import PCM

Float32 = npt.NDArray[np.float32]


@lru_cache(maxsize=16)
def _lowpass(cutoff: float, taps: int) -> npt.NDArray[np.float64]:
    """Windowed-sinc low-pass; cutoff as a fraction of the (upsampled) sample rate, 0 < cutoff < 0.5."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, 8.0)
    return np.asarray(h / h.sum(), dtype=np.float64)


def resample_float(audio: npt.ArrayLike, src_rate: int, dst_rate: int) -> Float32:
    """Resample float audio from src_rate to dst_rate (anti-aliased), returning float32."""
    x: npt.NDArray[np.float64] = np.asarray(audio, dtype=np.float64)
    if src_rate == dst_rate or len(x) == 0:
        return x.astype(np.float32)
    g = gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    if max(up, down) > 6:
        return _resample_fft(x, src_rate, dst_rate)
    # cutoff at 0.9 x the lower Nyquist, relative to the upsampled rate
    cutoff = 0.45 / max(up, down)
    taps = 24 * max(up, down) + 1
    h = _lowpass(cutoff, taps) * up
    stuffed: npt.NDArray[np.float64] = x
    if up > 1:
        stuffed = np.zeros(len(x) * up, dtype=np.float64)
        stuffed[::up] = x
    y = np.convolve(stuffed, h, mode="same")[::down]
    return y.astype(np.float32)


def _resample_fft(x: npt.NDArray[np.float64], src_rate: int, dst_rate: int) -> Float32:
    """Awkward ratios (22050 -> 8000): band-limited FFT resampling with a short taper at the cut."""
    n_out = round(len(x) * dst_rate / src_rate)
    spec = np.fft.rfft(x)
    keep = min(len(spec), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spec[:keep]
    taper = max(1, keep // 20)
    out_spec[keep - taper : keep] *= np.linspace(1.0, 0.0, taper)
    y = np.fft.irfft(out_spec, n_out) * (n_out / len(x))
    return y.astype(np.float32)


def pcm_to_float(pcm: PCM) -> Float32:
    return (np.asarray(pcm, dtype=np.float32) / 32768.0).astype(np.float32)


def float_to_pcm(x: npt.ArrayLike) -> PCM:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def resample_pcm(pcm: PCM, src_rate: int, dst_rate: int) -> PCM:
    return float_to_pcm(resample_float(pcm_to_float(pcm), src_rate, dst_rate))
