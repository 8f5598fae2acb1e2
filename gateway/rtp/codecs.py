"""G.711 µ-law / A-law payload codecs for RTP, built on engine.audio's bit-exact tables.

The hot paths write into caller-owned buffers (`encode_into`, `decode_into`) so the media ticker does no
per-packet allocation. Encoding indexes a 64 Ki table by the int16 sample viewed as uint16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.audio import (
    ALAW_DECODE,
    ALAW_SILENCE,
    PCM,
    SAMPLE_RATE,
    ULAW_DECODE,
    ULAW_SILENCE,
    alaw_encode,
    ulaw_encode,
)

CodecName = Literal["PCMU", "PCMA"]

#: Static payload types of RFC 3551.
STATIC_PAYLOAD_TYPES: dict[int, CodecName] = {0: "PCMU", 8: "PCMA"}
#: RFC 3389 comfort noise: carries no speech, we play silence for it.
COMFORT_NOISE_PT = 13
SUPPORTED_PTIMES = (10, 20, 30, 40, 60)


def _rolled_encode_table(encode: object) -> npt.NDArray[np.uint8]:
    """Table indexed by `int16_sample.view(uint16)` (0..32767 positive, 32768..65535 negative)."""
    ramp = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    table = np.frombuffer(encode(ramp), dtype=np.uint8)  # type: ignore[operator]
    return np.roll(table, 32768).copy()


@dataclass(frozen=True, slots=True)
class Codec:
    name: CodecName
    static_payload_type: int
    silence_byte: int
    decode_table: npt.NDArray[np.int16]
    encode_table: npt.NDArray[np.uint8]
    clock_rate: int = SAMPLE_RATE

    def encode(self, pcm: PCM) -> bytes:
        return self.encode_table[_as_u16(pcm)].tobytes()

    def encode_into(self, pcm: PCM, out: npt.NDArray[np.uint8]) -> None:
        """Encode len(out) samples of `pcm` into `out` (a view of the packet buffer)."""
        # every uint16 is a valid index into the 64 Ki table, so mode="clip" never clips; it only skips
        # the bounds check (and the buffering take() does for out= in the default mode)
        idx = pcm.view(np.uint16) if pcm.dtype == np.int16 else _as_u16(pcm)
        self.encode_table.take(idx, out=out, mode="clip")

    def decode(self, payload: bytes) -> PCM:
        return self.decode_table[np.frombuffer(payload, dtype=np.uint8)]

    def decode_into(self, payload: npt.NDArray[np.uint8], out: npt.NDArray[np.int16]) -> None:
        self.decode_table.take(payload, out=out)

    def silence_payload(self, samples: int) -> bytes:
        return bytes([self.silence_byte]) * samples


def _as_u16(pcm: PCM) -> npt.NDArray[np.uint16]:
    if pcm.dtype != np.int16 or not pcm.flags.c_contiguous:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    return pcm.view(np.uint16)


PCMU = Codec("PCMU", 0, ULAW_SILENCE, ULAW_DECODE, _rolled_encode_table(ulaw_encode))
PCMA = Codec("PCMA", 8, ALAW_SILENCE, ALAW_DECODE, _rolled_encode_table(alaw_encode))
CODECS: dict[str, Codec] = {"PCMU": PCMU, "PCMA": PCMA}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise ValueError(
            f"unsupported RTP codec {name!r}: outcall speaks PCMU and PCMA (G.711); "
            "offer one of them in the trunk's codec list"
        ) from None


def samples_per_packet(ptime_ms: int, clock_rate: int = SAMPLE_RATE) -> int:
    if ptime_ms <= 0 or ptime_ms > 200 or ptime_ms % 10:
        raise ValueError(f"unsupported ptime {ptime_ms} ms: use a multiple of 10 ms up to 200 (20 is usual)")
    return clock_rate * ptime_ms // 1000
