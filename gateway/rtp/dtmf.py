"""DTMF: RFC 4733 telephone-events on the wire, tone synthesis, and the in-band Goertzel detector.

The detector (engine.dtmf.GoertzelDetector, re-exported here) is for carriers that strip telephone-events
and pass DTMF as audio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from engine.audio import PCM, SAMPLE_RATE
from engine.dtmf import COL_FREQS, KEYPAD, ROW_FREQS, GoertzelDetector

from .packet import PacketError

__all__ = [
    "COL_FREQS",
    "DIGIT_TO_EVENT",
    "EVENTS",
    "KEYPAD",
    "ROW_FREQS",
    "GoertzelDetector",
    "TelephoneEvent",
    "decode_event",
    "digit_event",
    "encode_event",
    "tone",
    "validate_digits",
]

EVENTS = "0123456789*#ABCD"
DIGIT_TO_EVENT = {d: i for i, d in enumerate(EVENTS)}

_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int  # dBm0 below 0, 0..63
    duration: int  # timestamp units

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None

    def pack(self) -> bytes:
        return encode_event(self.event, end=self.end, volume=self.volume, duration=self.duration)


def digit_event(digit: str) -> int:
    try:
        return DIGIT_TO_EVENT[digit.upper()]
    except KeyError:
        raise ValueError(f"invalid DTMF digit {digit!r}: use 0-9, *, #, A-D") from None


def validate_digits(digits: str) -> str:
    for d in digits:
        digit_event(d)
    return digits.upper()


def encode_event(event: int, *, end: bool, volume: int = 10, duration: int) -> bytes:
    """RFC 4733 §2.3 payload: event, E|R|volume, duration (clamped to 16 bits)."""
    return _EVENT.pack(event & 0xFF, (0x80 if end else 0) | (volume & 0x3F), min(max(duration, 0), 0xFFFF))


def decode_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise PacketError(f"telephone-event payload too short ({len(payload)} bytes, need 4)")
    event, flags, duration = _EVENT.unpack_from(payload, 0)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def tone(digit: str, duration_ms: int, *, level_dbfs: float = -10.0, sample_rate: int = SAMPLE_RATE) -> PCM:
    """A DTMF dual tone; `level_dbfs` is the level of each of the two sines (peak-referenced)."""
    row, col = _position(validate_digits(digit))
    n = sample_rate * duration_ms // 1000
    t = np.arange(n) / sample_rate
    amp = 32767.0 * 10 ** (level_dbfs / 20.0)
    x = amp * (np.sin(2 * np.pi * ROW_FREQS[row] * t) + np.sin(2 * np.pi * COL_FREQS[col] * t))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _position(digit: str) -> tuple[int, int]:
    for r, keys in enumerate(KEYPAD):
        c = keys.find(digit)
        if c >= 0:
            return r, c
    raise ValueError(f"invalid DTMF digit {digit!r}")
