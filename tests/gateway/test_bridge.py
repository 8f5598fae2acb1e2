"""MediaBridge over real RTP sessions on loopback: leg a (PCMU) and leg b (PCMA) joined in our process,
each with a 'phone' RtpSession at the far end playing its own tone; each phone must hear the other's."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE
from gateway.bridge import BridgeRecorder, MediaBridge, RtpLeg
from gateway.rtp import RtpSession

A_HZ, B_HZ = 700.0, 1900.0


def tone(hz: float, seconds: float) -> PCM:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def dominant_hz(frame: PCM) -> float:
    spec = np.abs(np.fft.rfft(frame.astype(np.float64) * np.hanning(len(frame))))
    return float(np.argmax(spec[1:]) + 1) * SAMPLE_RATE / len(frame)


async def heard(phone: RtpSession, hz: float, frames_needed: int) -> int:
    """Frames read from `phone` until `frames_needed` loud frames dominated by `hz` (±50 Hz) arrived."""
    n = got = 0
    async for f in phone.frames():
        n += 1
        if len(f) == FRAME_SAMPLES and np.abs(f).max() > 2000 and abs(dominant_hz(f) - hz) <= 50:
            got += 1
            if got >= frames_needed:
                return n
    raise AssertionError(f"stream ended after {n} frames with only {got} frames of {hz} Hz")


async def _pair(codec: str, pt: int, name: str) -> tuple[RtpSession, RtpSession]:
    leg = await RtpSession.create(call_id=f"{name}-leg")
    phone = await RtpSession.create(call_id=f"{name}-phone")
    leg.set_remote(phone.local_host, phone.local_port, codec=codec, payload_type=pt)  # type: ignore[arg-type]
    phone.set_remote(leg.local_host, leg.local_port, codec=codec, payload_type=pt)  # type: ignore[arg-type]
    leg.start()
    phone.start()
    return leg, phone


@pytest.mark.parametrize("in_tick", [True, False], ids=["in-tick", "tasks"])
async def test_bridge_carries_both_directions_across_codecs(in_tick: bool, tmp_path: Path) -> None:
    leg_a, phone_a = await _pair("PCMU", 0, "a")
    leg_b, phone_b = await _pair("PCMA", 8, "b")
    rec = BridgeRecorder(tmp_path / "bridge.wav")
    bridge = MediaBridge(RtpLeg(leg_a), RtpLeg(leg_b), recorder=rec, allow_in_tick=in_tick)
    phone_a.playout.play(tone(A_HZ, 3.0))
    phone_b.playout.play(tone(B_HZ, 3.0))
    run = asyncio.create_task(bridge.run())
    try:
        async with asyncio.timeout(10.0):
            await asyncio.gather(heard(phone_b, A_HZ, 25), heard(phone_a, B_HZ, 25))
        assert bridge.in_tick is in_tick
        if in_tick:
            assert leg_a.on_frame is not None and leg_a.late_send and leg_b.late_send
        # the far side hanging up (its media closing) ends the bridge and restores the legs
        await leg_a.close()
        await asyncio.wait_for(run, 5.0)
        assert bridge.ended_by == "a"
        assert leg_b.on_frame is None and not leg_b.late_send
        assert bridge.relayed["a"] >= 25 and bridge.relayed["b"] >= 25
    finally:
        run.cancel()
        for s in (leg_a, leg_b, phone_a, phone_b):
            await s.close()
    path = await rec.close()
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2 and w.getframerate() == SAMPLE_RATE
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    loud_a = [f for f in data[:, 0].reshape(-1, FRAME_SAMPLES) if np.abs(f).max() > 2000]
    loud_b = [f for f in data[:, 1].reshape(-1, FRAME_SAMPLES) if np.abs(f).max() > 2000]
    assert len(loud_a) >= 20 and all(abs(dominant_hz(f) - A_HZ) <= 50 for f in loud_a[5:-5])
    assert len(loud_b) >= 20 and all(abs(dominant_hz(f) - B_HZ) <= 50 for f in loud_b[5:-5])


async def test_stop_ends_the_bridge_and_a_stalled_side_never_builds_delay() -> None:
    leg_a, phone_a = await _pair("PCMU", 0, "a")
    leg_b, phone_b = await _pair("PCMU", 0, "b")
    bridge = MediaBridge(RtpLeg(leg_a), RtpLeg(leg_b), max_backlog_frames=3)
    try:
        run = asyncio.create_task(bridge.run())
        # a burst of stale frames from one side is cut to the backlog limit, not queued up as delay
        for _ in range(10):
            bridge._relay(tone(A_HZ, 0.02), leg_b.playout, "a")
        assert leg_b.playout.queued_frames <= 3 and bridge.dropped["a"] >= 6
        bridge.stop()
        await asyncio.wait_for(run, 5.0)
        assert bridge.ended_by is None and leg_a.on_frame is None
    finally:
        for s in (leg_a, leg_b, phone_a, phone_b):
            await s.close()


async def test_supervisor_listening_in_hears_both_sides_and_is_not_heard() -> None:
    leg_a, phone_a = await _pair("PCMU", 0, "a")
    leg_b, phone_b = await _pair("PCMA", 8, "b")
    leg_s, phone_s = await _pair("PCMU", 0, "s")
    bridge = MediaBridge(RtpLeg(leg_a), RtpLeg(leg_b))
    bridge.listen(RtpLeg(leg_s))
    phone_a.playout.play(tone(A_HZ, 3.0))
    phone_b.playout.play(tone(B_HZ, 3.0))
    phone_s.playout.play(tone(1200.0, 3.0))  # the supervisor talks: nobody may hear it
    run = asyncio.create_task(bridge.run())
    try:

        async def both(phone: RtpSession) -> None:
            n = 0
            async for f in phone.frames():
                spec = np.abs(np.fft.rfft(f.astype(np.float64) * np.hanning(len(f))))
                k_a, k_b = round(A_HZ * len(f) / SAMPLE_RATE), round(B_HZ * len(f) / SAMPLE_RATE)
                if spec[k_a] > 0.2 * spec.max() and spec[k_b] > 0.2 * spec.max() and np.abs(f).max() > 4000:
                    n += 1
                    if n >= 25:
                        return

        async with asyncio.timeout(10.0):
            await both(phone_s)
            await heard(phone_b, A_HZ, 10)
        # the supervisor's 1200 Hz reached neither side
        for phone in (phone_a, phone_b):
            async with asyncio.timeout(5.0):
                seen = 0
                async for f in phone.frames():
                    seen += 1
                    assert abs(dominant_hz(f) - 1200.0) > 100 or np.abs(f).max() < 500
                    if seen >= 25:
                        break
    finally:
        bridge.stop()
        await asyncio.wait_for(run, 5.0)
        for s in (leg_a, leg_b, leg_s, phone_a, phone_b, phone_s):
            await s.close()
