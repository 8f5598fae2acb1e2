"""Audio frames and the G.711 codec tables.

A frame is 20 ms of mono signed 16-bit PCM at 8 kHz (160 samples) as a numpy int16 array.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160

PCM = npt.NDArray[np.int16]


def silence(samples: int = FRAME_SAMPLES) -> PCM:
    return np.zeros(samples, dtype=np.int16)


def frames_of(pcm: PCM, samples: int = FRAME_SAMPLES) -> list[PCM]:
    """Split PCM into whole frames, zero-padding the last one."""
    pcm = np.asarray(pcm, dtype=np.int16)
    n = -(-len(pcm) // samples) if len(pcm) else 0
    padded = np.zeros(n * samples, dtype=np.int16)
    padded[: len(pcm)] = pcm
    return [padded[i * samples : (i + 1) * samples] for i in range(n)]


def rms_dbfs(pcm: PCM) -> float:
    """Level of a block in dBFS (-120 for digital silence)."""
    if len(pcm) == 0:
        return -120.0
    x = pcm.astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    if rms < 1e-9:
        return -120.0
    return 20.0 * float(np.log10(rms / 32768.0))


def resample(pcm: PCM, src_rate: int, dst_rate: int) -> PCM:
    """Band-limited-enough resampling for speech (linear interpolation after a moving-average low-pass)."""
    if src_rate == dst_rate or len(pcm) == 0:
        return np.asarray(pcm, dtype=np.int16).copy()
    x = np.asarray(pcm, dtype=np.float64)
    if dst_rate < src_rate:
        k = max(1, round(src_rate / dst_rate))
        if k > 1:
            x = np.convolve(x, np.ones(k) / k, mode="same")
    n_out = round(len(x) * dst_rate / src_rate)
    t_out = np.arange(n_out) * (src_rate / dst_rate)
    y: npt.NDArray[np.float64] = np.asarray(np.interp(t_out, np.arange(len(x)), x), dtype=np.float64)
    out: PCM = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return out


def to_float32(pcm: PCM) -> npt.NDArray[np.float32]:
    return (np.asarray(pcm, dtype=np.float32) / 32768.0).astype(np.float32)


def from_float32(x: npt.NDArray[np.floating[npt.NBitBase]]) -> PCM:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


# --- G.711 (ITU-T G.711), table driven -------------------------------------------------------------


def _ulaw_decode_one(u: int) -> int:
    u = ~u & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    sample = ((mantissa << 3) + 0x84) << exponent
    sample -= 0x84
    return -sample if sign else sample


def _alaw_decode_one(a: int) -> int:
    a ^= 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    if exponent == 0:
        sample = (mantissa << 4) + 8
    else:
        sample = ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


def _ulaw_encode_one(s: int) -> int:
    # Sun/ITU reference: 14-bit magnitude, bias 33, segment search (matches audioop.lin2ulaw).
    seg_end = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    v = s >> 2
    if v < 0:
        v, mask = -v, 0x7F
    else:
        mask = 0xFF
    v = min(v, 8159) + 33
    seg = next((i for i, end in enumerate(seg_end) if v <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_encode_one(s: int) -> int:
    sign = 0x80 if s >= 0 else 0
    if s < 0:
        s = -s - 1 if s > -32768 else 32767
    s = min(s, 32767)
    if s < 256:
        exponent, mantissa = 0, (s >> 4) & 0x0F
    else:
        exponent = s.bit_length() - 8
        exponent = min(exponent, 7)
        mantissa = (s >> (exponent + 3)) & 0x0F
    return (sign | (exponent << 4) | mantissa) ^ 0x55


ULAW_DECODE: npt.NDArray[np.int16] = np.array([_ulaw_decode_one(i) for i in range(256)], dtype=np.int16)
ALAW_DECODE: npt.NDArray[np.int16] = np.array([_alaw_decode_one(i) for i in range(256)], dtype=np.int16)
_ULAW_ENCODE: npt.NDArray[np.uint8] = np.array(
    [_ulaw_encode_one(s) for s in range(-32768, 32768)], dtype=np.uint8
)
_ALAW_ENCODE: npt.NDArray[np.uint8] = np.array(
    [_alaw_encode_one(s) for s in range(-32768, 32768)], dtype=np.uint8
)


def ulaw_encode(pcm: PCM) -> bytes:
    return _ULAW_ENCODE[np.asarray(pcm, dtype=np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> PCM:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: PCM) -> bytes:
    return _ALAW_ENCODE[np.asarray(pcm, dtype=np.int32) + 32768].tobytes()


def alaw_decode(data: bytes) -> PCM:
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


#: Silence byte of each law (encoded 0).
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5
