"""Two real RtpSessions on loopback UDP: audio, DTMF, ptime, latching, timeouts, barge-in."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest

from engine.audio import FRAME_SAMPLES, ulaw_decode, ulaw_encode
from engine.clock import VirtualClock
from gateway.rtp import MediaTicker, RtpSession
from gateway.rtp.dtmf import tone
from gateway.rtp.packet import RtpPacket

TIMEOUT = 5.0


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RtpSession, RtpSession]]:
    a = await RtpSession.create(call_id="a")
    b = await RtpSession.create(call_id="b")
    yield a, b
    await a.close()
    await b.close()


def connect(a: RtpSession, b: RtpSession, **kw: object) -> None:
    a.set_remote(b.local_host, b.local_port, codec="PCMU", payload_type=0, **kw)  # type: ignore[arg-type]
    b.set_remote(a.local_host, a.local_port, codec="PCMU", payload_type=0)


async def collect(s: RtpSession, n: int) -> np.ndarray:
    async def run() -> np.ndarray:
        out = []
        async for f in s.frames():
            out.append(f)
            if len(out) >= n:
                break
        return np.concatenate(out)

    return await asyncio.wait_for(run(), TIMEOUT + n * 0.02)


def best_correlation(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    x = sent.astype(np.float64)
    y = received.astype(np.float64)
    n = len(x) + len(y)
    nfft = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(x, nfft)), nfft)
    lag = int(np.argmax(c[: len(y)]))
    seg = y[lag : lag + len(x)]
    m = min(len(seg), len(x))
    r = np.corrcoef(x[:m], seg[:m])[0, 1]
    return float(r), lag


def speech_like(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * 8000)) / 8000
    f0 = 130 + 40 * np.sin(2 * np.pi * 0.9 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.clip(np.sin(2 * np.pi * 3 * t), 0.1, None)
    x = x + 0.01 * rng.standard_normal(len(t))
    out: np.ndarray = (x / np.abs(x).max() * 12000).astype(np.int16)
    return out


async def test_local_port_is_even_and_bound(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    assert a.local_host == "127.0.0.1" and a.local_port % 2 == 0 and a.local_port != b.local_port


async def test_port_range_is_honoured() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    base = probe.getsockname()[1] & ~1
    probe.close()
    s = await RtpSession.create(port_range=(base, base + 40))
    try:
        assert base <= s.local_port <= base + 40 and s.local_port % 2 == 0
    finally:
        await s.close()


@pytest.mark.parametrize("signal", ["tone", "speech"])
async def test_audio_crosses_loopback_intact(pair: tuple[RtpSession, RtpSession], signal: str) -> None:
    a, b = pair
    connect(a, b)
    t = np.arange(8000) / 8000
    sent = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16) if signal == "tone" else speech_like(1.0)
    a.start()
    b.start()
    a.playout.play(sent)
    rx = await collect(b, 70)
    r, lag = best_correlation(ulaw_decode(ulaw_encode(sent)), rx)
    assert r > 0.99, (r, lag)
    assert lag <= 10 * FRAME_SAMPLES  # bounded latency: jitter target plus start-up
    st = b.stats()
    assert st["packets_received"] >= 60 and st["loss_pct"] == 0.0 and st["malformed"] == 0


async def test_inbound_ptime_30_is_reframed(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    connect(a, b, ptime_ms=30)  # a sends 30 ms packets
    sent = speech_like(1.2)
    a.start()
    b.start()
    a.playout.play(sent)
    rx = await collect(b, 80)
    r, _ = best_correlation(ulaw_decode(ulaw_encode(sent)), rx)
    assert r > 0.99
    st = b.stats()
    assert st["frames_out"] >= 80 and st["bytes_received"] / st["packets_received"] == 12 + 240


async def test_rfc4733_dtmf_round_trip(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    connect(a, b)
    got: list[tuple[str, int]] = []
    done = asyncio.Event()

    def on_dtmf(d: str, ms: int) -> None:
        got.append((d, ms))
        if len(got) == 4:
            done.set()

    b.on_dtmf = on_dtmf
    a.start()
    b.start()
    await asyncio.wait_for(a.send_dtmf("19*#", duration_ms=120), TIMEOUT)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got == [("1", 120), ("9", 120), ("*", 120), ("#", 120)]  # end packets x3 reported once
    assert b.dtmf_method == "rfc4733" and a.stats()["dtmf_sent"] == 4


async def test_inband_dtmf_when_no_telephone_event(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    a.set_remote(b.local_host, b.local_port, codec="PCMA", payload_type=8, dtmf_payload_type=None)
    b.set_remote(a.local_host, a.local_port, codec="PCMA", payload_type=8, dtmf_payload_type=None)
    got: list[str] = []
    done = asyncio.Event()

    def on_dtmf(d: str, ms: int) -> None:
        got.append(d)
        if len(got) == 3:
            done.set()

    b.on_dtmf = on_dtmf
    a.start()
    b.start()
    await asyncio.wait_for(a.send_dtmf("42D"), TIMEOUT)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got == ["4", "2", "D"] and b.dtmf_method == "inband"


async def test_clear_stops_voice_on_the_next_packet() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    silence = b"\xff" * 160

    async def recv() -> RtpPacket:
        return RtpPacket.parse(await asyncio.wait_for(loop.sock_recv(raw, 2048), TIMEOUT))

    a = await RtpSession.create(call_id="barge")
    try:
        a.set_remote("127.0.0.1", raw.getsockname()[1], codec="PCMU", payload_type=0)
        a.start()
        first = await recv()
        assert first.marker  # first packet of the stream
        handle = a.playout.play(tone("5", 3000, level_dbfs=-6))
        while (await recv()).payload == silence:
            pass
        # voice is flowing: barge in
        sent = int(a.stats()["packets_sent"])
        a.playout.clear()
        assert handle.interrupted
        by_seq: dict[int, bytes] = {}
        want = (first.sequence_number + sent) & 0xFFFF  # the first packet sent after clear()
        while want not in by_seq:
            p = await recv()
            by_seq[p.sequence_number] = p.payload
        assert by_seq[want] == silence
        prev = (want - 1) & 0xFFFF
        if prev in by_seq:  # the last packet before clear() was still voice
            assert by_seq[prev] != silence
    finally:
        await a.close()
        raw.close()


async def test_inactivity_timeout_fires_once() -> None:
    a = await RtpSession.create(call_id="quiet", inactivity_timeout=0.3)
    fired: list[float] = []
    ev = asyncio.Event()

    def on_timeout(silent: float) -> None:
        fired.append(silent)
        ev.set()

    a.on_timeout = on_timeout
    a.set_remote("127.0.0.1", 9, codec="PCMU", payload_type=0)  # discard port: nobody answers
    a.start()
    await asyncio.wait_for(ev.wait(), TIMEOUT)
    await collect(a, 10)  # more ticks pass
    await a.close()
    assert len(fired) == 1 and fired[0] >= 0.3


async def test_no_timeout_while_media_flows(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    for s in pair:
        s.inactivity_timeout = 0.1
    fired: list[float] = []
    b.on_timeout = fired.append
    connect(a, b)
    a.start()
    b.start()
    await collect(b, 30)
    assert fired == []


async def test_inactivity_on_virtual_clock() -> None:
    clock = VirtualClock()
    a = await RtpSession.create(call_id="v", inactivity_timeout=30.0, clock=clock)
    fired: list[float] = []
    a.on_timeout = fired.append
    a.start()
    await clock.advance(29.0, step=0.02)
    assert fired == []
    await clock.advance(1.5, step=0.02)
    assert len(fired) == 1 and 30.0 <= fired[0] < 30.1
    assert a.stats()["frames_out"] >= 1500
    await a.close()


async def test_latches_to_actual_source_address() -> None:
    a = await RtpSession.create(call_id="nat")
    b = await RtpSession.create(call_id="sbc")
    wrong = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what the SDP claims; never used by b
    wrong.bind(("127.0.0.1", 0))
    try:
        a.set_remote("127.0.0.1", wrong.getsockname()[1], codec="PCMU", payload_type=0)
        b.set_remote(a.local_host, a.local_port, codec="PCMU", payload_type=0)
        a.start()
        b.start()
        b.playout.play(speech_like(0.5))
        a.playout.play(speech_like(1.5))
        await collect(a, 5)
        rx = await collect(b, 60)
        assert a.remote_address == (b.local_host, b.local_port)
        assert np.abs(rx).max() > 1000  # b hears a only because a latched
    finally:
        wrong.close()
        await a.close()
        await b.close()


async def test_malformed_and_foreign_packets_are_counted_not_raised(
    pair: tuple[RtpSession, RtpSession],
) -> None:
    a, b = pair
    connect(a, b)
    a.start()
    b.start()
    a.playout.play(speech_like(1.0))
    await collect(b, 5)  # b has latched to a
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in (b"", b"\x00" * 3, b"\x40" + b"\x00" * 20, b"\x8f\x00" + b"\x00" * 10):
            junk.sendto(data, (b.local_host, b.local_port))
        junk.sendto(
            RtpPacket(payload_type=0, payload=b"\x00" * 160).serialize(), (b.local_host, b.local_port)
        )
        rx = await collect(b, 20)
    finally:
        junk.close()
    st = b.stats()
    assert st["malformed"] >= 2 and st["foreign"] >= 1
    assert np.abs(rx).max() > 1000  # still hearing a


async def test_set_remote_again_moves_media_and_frames_end_on_close() -> None:
    a = await RtpSession.create(call_id="move")
    b1 = await RtpSession.create(call_id="early")
    b2 = await RtpSession.create(call_id="final")
    try:
        a.set_remote(b1.local_host, b1.local_port, codec="PCMU", payload_type=0)
        a.start()
        b1.start()
        b2.start()
        a.playout.play(speech_like(2.0))
        await collect(b1, 10)
        a.set_remote(b2.local_host, b2.local_port, codec="PCMA", payload_type=8)  # 200 OK answer differs
        rx = await collect(b2, 40)
        assert np.abs(rx).max() > 1000
        await a.close()
        leftover = [f async for f in a.frames()]  # the iterator ends after close()
        assert len(leftover) <= 50
    finally:
        await b1.close()
        await b2.close()


async def test_ticker_is_shared_and_reports_stats(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    connect(a, b)
    a.start()
    b.start()
    await collect(b, 10)
    ticker = MediaTicker.get()
    assert ticker.sessions >= 2
    st = ticker.stats()
    assert st["ticks"] >= 10 and st["send_jitter_p99_ms"] < 50
    assert a.stats()["send_jitter_p99_ms"] < 50


async def test_bad_remote_is_a_clear_error(pair: tuple[RtpSession, RtpSession]) -> None:
    from engine.errors import ConfigError

    a, _ = pair
    with pytest.raises(ConfigError, match="not an IP address"):
        a.set_remote("sbc.example.com", 4000, codec="PCMU", payload_type=0)
    with pytest.raises(ValueError, match="PCMU and PCMA"):
        a.set_remote("127.0.0.1", 4000, codec="G729", payload_type=18)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DTMF digit"):
        await a.send_dtmf("12x")
