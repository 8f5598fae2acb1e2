"""Jitter buffer: order, loss, duplicates, SSRC resets, wraparound, re-framing, latency bound."""

from __future__ import annotations

import numpy as np

from gateway.rtp.jitter import DUPLICATE, LATE, OK, JitterBuffer


def ramp(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n) % 30000 + 1).astype(np.int16)


def pop_all(jb: JitterBuffer, n: int) -> np.ndarray:
    return np.concatenate([jb.pop()[0] for _ in range(n)])


def play(jb: JitterBuffer, order: list[int], ts0: int = 1000, size: int = 160, ssrc: int = 1) -> None:
    for k in order:
        jb.put(ssrc, (ts0 + k * size) & 0xFFFFFFFF, ramp(size, k * size))


def realtime(
    jb: JitterBuffer, packets: list[int], ticks: int, size: int = 160, ts0: int = 1000
) -> list[tuple[np.ndarray, bool]]:
    """Deliver packet k once its last sample exists in media time (as a sender would), pop every tick."""
    out: list[tuple[np.ndarray, bool]] = []
    pending = sorted(packets)
    for tick in range(ticks):
        while pending and (pending[0] + 1) * size <= (tick + 1) * 160:
            k = pending.pop(0)
            jb.put(1, (ts0 + k * size) & 0xFFFFFFFF, ramp(size, k * size))
        out.append(jb.pop())
    return out


def test_in_order_stream_comes_out_intact_after_target_delay() -> None:
    jb = JitterBuffer(min_target_ms=40)
    out = np.concatenate([f for f, _ in realtime(jb, list(range(100)), 102)])
    assert np.all(out[:320] == 0)  # 40 ms of pre-roll
    assert np.array_equal(out[320 : 320 + 16000], ramp(16000))
    assert jb.late == 0 and jb.duplicates == 0


def test_reordering_is_undone() -> None:
    a, b = JitterBuffer(), JitterBuffer()
    play(a, [0, 1, 2, 3, 4, 5, 6, 7])
    play(b, [0, 2, 1, 3, 5, 4, 7, 6])
    assert np.array_equal(pop_all(a, 10), pop_all(b, 10))


def test_loss_is_concealed_then_silence_and_stream_continues() -> None:
    jb = JitterBuffer(min_target_ms=40, plc="repeat")
    out = realtime(jb, [0, 1, 2, 3, 9, 10, 11], 14)  # 4..8 lost
    # frames: 2 pre-roll, 0..3 real, 4..8 missing, 9..11 real
    assert [real for _, real in out[2:6]] == [True] * 4
    concealed = [f for f, real in out[6:11]]
    assert not any(real for _, real in out[6:11])
    last = out[5][0].astype(np.int32)
    assert np.array_equal(concealed[0], (last >> 1).astype(np.int16))  # repeat, attenuated
    assert np.abs(concealed[1]).max() < np.abs(concealed[0]).max()
    assert np.all(concealed[3] == 0) and np.all(concealed[4] == 0)
    assert np.array_equal(out[11][0], ramp(160, 9 * 160))
    assert jb.concealed == 5


def test_zero_plc_mode() -> None:
    jb = JitterBuffer(plc="zeros")
    play(jb, [0, 1, 2])
    frames = [jb.pop()[0] for _ in range(6)]
    assert np.all(frames[5] == 0)


def test_duplicate_and_late_packets_are_counted_not_played_twice() -> None:
    jb = JitterBuffer()
    play(jb, [0, 1, 2, 3])
    assert jb.put(1, 1000 + 160, ramp(160, 160)) == DUPLICATE
    pop_all(jb, 5)
    assert jb.put(1, 1000, ramp(160)) == LATE
    assert (jb.duplicates, jb.late) == (1, 1)


def test_ssrc_change_resets() -> None:
    jb = JitterBuffer()
    play(jb, [0, 1, 2], ssrc=1)
    pop_all(jb, 3)
    play(jb, [0, 1, 2, 3], ts0=99_999_999, ssrc=2)
    assert jb.resets == 1
    out = pop_all(jb, 6)
    assert np.array_equal(out[320:640], ramp(320))  # new stream from its own start, after target


def test_timestamp_wraparound_is_seamless() -> None:
    jb = JitterBuffer()
    ts0 = (1 << 32) - 3 * 160 + 7  # wraps in the middle of the stream, unaligned
    play(jb, list(range(8)), ts0=ts0)
    out = pop_all(jb, 10)
    assert np.array_equal(out[320 : 320 + 8 * 160], ramp(8 * 160))
    assert jb.resets == 0 and jb.late == 0


def test_big_timestamp_jump_resyncs() -> None:
    jb = JitterBuffer()
    play(jb, [0, 1, 2])
    pop_all(jb, 4)
    play(jb, [0, 1, 2, 3], ts0=1000 + 8000 * 60)  # a minute ahead: new stream in all but SSRC
    assert jb.resets == 1
    out = pop_all(jb, 6)
    assert np.array_equal(out[320:960], ramp(640))


def test_ptime_30_and_10_are_reframed_into_20ms_frames() -> None:
    for size in (240, 80):
        jb = JitterBuffer()
        n = 4800 // size
        out = np.concatenate([f for f, _ in realtime(jb, list(range(n)), 34, size=size)])
        start = int(np.argmax(out != 0))
        assert np.array_equal(out[start : start + 4800], ramp(4800)), size
        assert start <= 320 + 160


def test_talkspurt_after_silence_gap_restarts_at_target() -> None:
    jb = JitterBuffer(min_target_ms=40)
    play(jb, [0, 1])
    pop_all(jb, 10)  # drained, now holding (underrun)
    assert jb.underruns > 0
    # sender used DTX for 300 ms; next talkspurt arrives 300 ms later in media time
    play(jb, [17, 18, 19, 20])
    out = pop_all(jb, 6)
    assert np.array_equal(out[320 : 320 + 640], ramp(640, 17 * 160))


def test_latency_is_bounded() -> None:
    jb = JitterBuffer(min_target_ms=40, max_latency_ms=200)
    play(jb, list(range(30)))  # a 600 ms burst arrives at once
    jb.pop()
    assert jb.depth <= int(0.200 * 8000)
    assert jb.dropped_samples > 0
    # slow adaptation drains persistent excess delay down towards the target
    for k in range(30, 30 + 250):
        play(jb, [k])
        jb.pop()
    assert jb.depth <= jb.target + 160


def test_underrun_holds_position_so_late_packet_still_plays() -> None:
    jb = JitterBuffer(min_target_ms=20)
    play(jb, [0])
    out = [jb.pop() for _ in range(3)]  # 20 ms pre-roll, frame 0, then underrun
    assert out[1][1] and not out[2][1]
    assert jb.put(1, 1000 + 160, ramp(160, 160)) == OK  # arrives late but not too late
    frame, real = jb.pop()
    assert real and np.array_equal(frame, ramp(160, 160))
