"""G.711 payload codecs against engine.audio (the bit-exact reference)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from gateway.rtp.codecs import PCMA, PCMU, get_codec, samples_per_packet


@pytest.mark.parametrize(
    ("codec", "enc", "dec"), [(PCMU, ulaw_encode, ulaw_decode), (PCMA, alaw_encode, alaw_decode)]
)
def test_codec_matches_engine_tables(codec, enc, dec) -> None:  # type: ignore[no-untyped-def]
    ramp = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    assert codec.encode(ramp) == enc(ramp)
    out = np.zeros(len(ramp), dtype=np.uint8)
    codec.encode_into(ramp, out)
    assert out.tobytes() == enc(ramp)
    payload = bytes(range(256))
    assert np.array_equal(codec.decode(payload), dec(payload))
    pcm = np.zeros(256, dtype=np.int16)
    codec.decode_into(np.frombuffer(payload, dtype=np.uint8), pcm)
    assert np.array_equal(pcm, dec(payload))
    assert codec.decode(codec.silence_payload(4)).tolist() == [0, 0, 0, 0] or codec is PCMA


def test_get_codec_and_ptime_errors_name_the_fix() -> None:
    assert get_codec("pcmu") is PCMU
    with pytest.raises(ValueError, match="PCMU and PCMA"):
        get_codec("G729")
    assert samples_per_packet(30) == 240
    with pytest.raises(ValueError, match="multiple of 10"):
        samples_per_packet(25)
