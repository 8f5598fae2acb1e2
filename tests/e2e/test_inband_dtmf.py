"""In-band DTMF over a real RTP stream: SIPp answers without offering telephone-event (a carrier that
strips RFC 4733) and plays PCMA audio carrying the tones 1, 5, 9; our leg must report them as inband."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from peers import SIPP_DIR, SippServer, write_rtp_pcap

from engine.events import DtmfReceived, LegEvent
from gateway.rtp.dtmf import tone
from gateway.sip.ua import UserAgent

pytestmark = pytest.mark.e2e

PCAP = SIPP_DIR / "inband_dtmf.pcap"
DIGITS = "159"


def make_pcap(dst: Path = PCAP) -> Path:
    """The committed pcap: 0.4 s silence, then each digit 120 ms at -12 dBFS with 150 ms gaps, with a
    little line noise, as PCMA RTP. Re-create it with `python tests/e2e/test_inband_dtmf.py`."""
    rng = np.random.default_rng(9)
    parts = [np.zeros(3200)]
    for d in DIGITS:
        parts += [tone(d, 120, level_dbfs=-12.0).astype(np.float64), np.zeros(1200)]
    parts.append(np.zeros(4000))
    x = np.concatenate(parts) + rng.normal(0, 30, sum(len(p) for p in parts))
    pcm = np.clip(np.round(x), -32768, 32767).astype("<i2")
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "dtmf.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.tobytes())
        return write_rtp_pcap(wav, dst, payload_type=8)


async def test_inband_dtmf_from_a_real_rtp_stream(
    ua: UserAgent, sipp_server: Callable[..., SippServer]
) -> None:
    assert PCAP.exists(), "run `python tests/e2e/test_inband_dtmf.py` to create the pcap"
    uas = sipp_server("uas_inband_dtmf.xml", timeout_s=20)
    leg = await ua.originate(uas.uri(), caller_id="1001")
    got: list[DtmfReceived] = []

    async def collect() -> None:
        ev: LegEvent
        async for ev in leg.events():
            if isinstance(ev, DtmfReceived):
                got.append(ev)
                if len(got) == len(DIGITS):
                    return

    drain = asyncio.ensure_future(_drain(leg))
    try:
        await asyncio.wait_for(collect(), 10)
    finally:
        await leg.hangup()
        drain.cancel()
    assert "".join(e.digit for e in got) == DIGITS
    assert {e.method for e in got} == {"inband"}
    uas.wait(10).check()


async def _drain(leg: object) -> None:
    async for _ in leg.frames():  # type: ignore[attr-defined]
        pass


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(make_pcap())
