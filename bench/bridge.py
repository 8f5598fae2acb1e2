"""Bridge benchmark: added mouth-to-ear delay through gateway.bridge.MediaBridge, and N concurrent bridges.

    .venv/bin/python bench/bridge.py --json            # 1 bridge (delay), then 50 bridges (load), 20 s each
    .venv/bin/python bench/bridge.py --quick --json    # 1 and 10 bridges, 4 s each (smoke run)

This process is the gateway: per bridge two RtpSessions (leg a and leg b, PCMU, on the shared media ticker)
joined by a MediaBridge, exactly as a transferred call runs. The phones run in a second process: per bridge
one UDP endpoint talks to leg a and one to leg b, each sending a 20 ms PCMU packet every 20 ms whose payload
carries the packet's number (µ-law codes that survive decode -> re-encode bit-exactly). The far phone reads
the number back out of what the bridge sent it, so each relayed frame gives one delay sample:

    delay = kernel receive time at the far phone - the near phone's send time (one monotonic clock)

That is the whole path phone -> leg a (its jitter buffer) -> bridge -> leg b -> phone: the bridge's added
mouth-to-ear delay (a direct phone-to-phone path on loopback is ~0.05 ms). A frame that straddles two
packets is timed by where the packets' samples sit in it (every sample of a frame has the same delay).
Loss counts packet numbers sent in the measured window none of whose samples reached the far phone;
`jb_partial_frames` counts frames with a gap (a packet arrived after its samples were due). CPU is this
process's (the gateway's) user+system time over wall time. Prints one JSON object and writes
bench/results/bridge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import resource
import select
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from gateway.bridge import MediaBridge, RtpLeg
from gateway.rtp import MediaTicker, RtpSession

RESULTS = Path(__file__).resolve().parent / "results" / "bridge.json"

_MARK = 0x55
_BASE = 63  # digits are µ-law codes 0x01..0x3F
_HDR = struct.Struct("!BBHII")
_TIMESPEC = struct.Struct("@qq")
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def encode_id(k: int) -> bytes:
    d = (1 + k % _BASE, 1 + (k // _BASE) % _BASE, 1 + (k // _BASE**2) % _BASE)
    return bytes([_MARK, *d]) * 40  # 160 bytes: the number repeated every 4 samples


def _group_id(g: bytes) -> int | None:
    if g[0] == _MARK and all(1 <= x <= _BASE for x in g[1:]):
        return (g[1] - 1) + (g[2] - 1) * _BASE + (g[3] - 1) * _BASE**2
    return None


def decode_frame(payload: bytes) -> tuple[int, int] | None:
    """(n, b): packet n's first sample is frame sample b (b < 0: the frame starts -b samples into it).
    None when the frame holds no whole group of a packet (silence, a gap).

    Every sample of a relayed frame has the same mouth-to-ear delay: the frame leaves at t_out and its
    sample b is packet n's first sample, so delay = t_out - t_sent(n) + b / 8000 s."""
    size = len(payload)
    best: tuple[int, int, bytes] | None = None  # (n, first whole group start, group)
    i = payload.find(_MARK)
    while 0 <= i <= size - 4:
        g = payload[i : i + 4]
        n = _group_id(g)
        if n is not None and (i + 8 > size or payload[i + 4 : i + 8] == g) and (best is None or n > best[0]):
            best = (n, i, g)
        i = payload.find(_MARK, i + 1)
    if best is None:
        return None
    n, first, g = best
    # packet starts are 160 samples (40 groups) apart, so all sit on first's 4-sample grid
    e = first
    while e + 4 <= size and payload[e : e + 4] == g:
        e += 4
    end_known = False
    if e < size and payload[e:] != g[: size - e]:
        if payload[e] == _MARK:
            return n + 1, e  # the next packet starts inside the frame
        end_known = True  # a gap (concealment/silence) follows packet n
    b = first
    while b >= 4 and payload[b - 4 : b] == g:
        b -= 4
    if b >= 4 or (b > 0 and payload[:b] != g[4 - b :]):
        return n, b  # packet n starts here, after the older packet or a gap
    if end_known:
        return n, e - 160  # it ends at e: it started 160 - e samples before the frame
    return n, b if b == 0 else b - 4


# ----------------------------------------------------------------------------------- the phones (child)


def phones(
    conn: Connection, gw_ports: list[tuple[int, int]], seconds: float, warmup: float, seed: int = 11
) -> None:
    """One UDP endpoint per leg; each sends a numbered packet every 20 ms (each phone at its own random
    phase against the gateway's ticker, as real phones are) and timestamps what comes back."""
    n = len(gw_ports)
    m = 2 * n
    socks: list[socket.socket] = []
    for _ in range(m):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        socks.append(s)
    conn.send([s.getsockname()[1] for s in socks])
    conn.recv()  # the gateway has set its remote addresses and started
    dest = [("127.0.0.1", gw_ports[i // 2][i % 2]) for i in range(m)]
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    sent_at: list[dict[int, float]] = [{} for _ in range(m)]  # per endpoint: number -> send time
    got: list[set[int]] = [set() for _ in range(m)]
    delays: list[float] = []
    offset = time.time() - time.monotonic()
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    measure_from = t0 + warmup
    end = measure_from + seconds
    tail_end = end + 1.0
    next_send = [t0 + float(x) for x in rng.uniform(0.0, 0.020, m)]
    count = [0] * m
    received: list[tuple[int, float, bytes]] = []  # decoded after the run (no work in the timed loop)
    buf = bytearray(2048)
    while True:
        now = time.monotonic()
        if now < end:
            for i in range(m):
                if next_send[i] > now:
                    continue
                k = count[i]
                count[i] += 1
                hdr = _HDR.pack(0x80, 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x1000 + i)
                t = time.monotonic()
                try:
                    socks[i].sendto(hdr + encode_id(k), dest[i])
                except BlockingIOError:
                    pass
                else:
                    sent_at[i][k] = t
                next_send[i] += 0.020
                if next_send[i] < now - 0.1:  # this process fell far behind: do not burst
                    next_send[i] = now + 0.020
        elif now >= tail_end:
            break
        wake = min(min(next_send), end) if now < end else tail_end
        for fd, _ev in poller.poll(max(0.0, wake - time.monotonic())):
            i = by_fd[fd]
            sock = socks[i]
            while True:
                try:
                    nbytes, anc, _f, _a = sock.recvmsg_into([buf], 64)
                except BlockingIOError:
                    break
                arrival = time.monotonic()
                if anc:
                    sec, nsec = _TIMESPEC.unpack_from(anc[0][2])
                    arrival = sec + nsec * 1e-9 - offset
                if nbytes >= 12 + 160:
                    received.append((i, arrival, bytes(buf[12 : 12 + 160])))
    undecodable = 0  # silence before the first packet / after the last, or a concealed frame
    for i, arrival, payload in received:
        found = decode_frame(payload)
        if found is None:
            undecodable += 1
            continue
        num, b = found
        t_sent = sent_at[i ^ 1].get(num)  # the other leg's phone of the same bridge sent it
        if t_sent is None:
            continue
        got[i].add(num)
        if b > 0 and payload[0] != 0xFF:  # the older packet's tail is there too (0xFF: a µ-law gap)
            got[i].add(num - 1)
        if measure_from <= t_sent < end:
            delays.append(arrival - t_sent + b / 8000.0)
    expected = 0
    lost = 0
    for i in range(m):
        want = [x for x, t in sent_at[i ^ 1].items() if measure_from <= t < end]
        expected += len(want)
        lost += sum(1 for x in want if x not in got[i])
    d = np.array(delays) * 1000.0
    conn.send(
        {
            "delay_samples": len(d),
            "delay_p50_ms": round(float(np.percentile(d, 50)), 2) if len(d) else None,
            "delay_p95_ms": round(float(np.percentile(d, 95)), 2) if len(d) else None,
            "delay_p99_ms": round(float(np.percentile(d, 99)), 2) if len(d) else None,
            "delay_max_ms": round(float(d.max()), 2) if len(d) else None,
            "frames_expected": expected,
            "frames_lost": lost,
            "loss_pct": round(100.0 * lost / expected, 4) if expected else 0.0,
            "frames_without_packet_start": undecodable,
        }
    )
    conn.close()


# ----------------------------------------------------------------------------------- the gateway (parent)


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


async def run(
    n: int, seconds: float, warmup: float, *, in_tick: bool = True, jitter_min_ms: float = 7.5
) -> dict[str, Any]:
    _raise_nofile(8 * n + 256)
    legs: list[tuple[RtpSession, RtpSession]] = []
    for i in range(n):
        a = await RtpSession.create(call_id=f"bridge-{i}-a")
        b = await RtpSession.create(call_id=f"bridge-{i}-b")
        legs.append((a, b))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=phones, args=(child, [(a.local_port, b.local_port) for a, b in legs], seconds, warmup)
    )
    proc.start()
    loop = asyncio.get_running_loop()
    ports: list[int] = await loop.run_in_executor(None, parent.recv)
    bridges: list[MediaBridge] = []
    for i, (a, b) in enumerate(legs):
        a.set_remote("127.0.0.1", ports[2 * i], codec="PCMU", payload_type=0, dtmf_payload_type=None)
        b.set_remote("127.0.0.1", ports[2 * i + 1], codec="PCMU", payload_type=0, dtmf_payload_type=None)
        a.inband_dtmf = False
        b.inband_dtmf = False
        a.start()
        b.start()
        bridges.append(MediaBridge(RtpLeg(a), RtpLeg(b), allow_in_tick=in_tick, jitter_min_ms=jitter_min_ms))
    runs = [asyncio.create_task(br.run()) for br in bridges]
    parent.send("go")
    ticker = MediaTicker.get()
    await asyncio.sleep(warmup)
    ticker.reset_stats()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    tstats = ticker.stats()
    rtp_stats = [s.stats() for pair in legs for s in pair]  # before the phones stop sending
    backlog = [s.playout.queued_frames for pair in legs for s in pair]
    partial = sum(s._jb.partial for pair in legs for s in pair)  # frames with a gap (audio lost)
    phone: dict[str, Any] = await loop.run_in_executor(None, parent.recv)
    await loop.run_in_executor(None, proc.join, 10.0)
    for br in bridges:
        br.stop()
    await asyncio.gather(*runs)
    for a, b in legs:
        await a.close()
        await b.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    dropped = sum(v for br in bridges for k, v in br.stats().items() if k.startswith("dropped"))
    return {
        "bridges": n,
        "legs": 2 * n,
        "relay": "in_tick" if all(br.in_tick for br in bridges) else "tasks",
        "jitter_min_ms": jitter_min_ms,
        "seconds": round(wall, 3),
        **phone,
        "gateway_cpu_cores_used": round(cpu / wall, 3),
        "gateway_cpu_ms_per_bridge_second": round(1000 * cpu / wall / n, 3),
        "bridge_backlog_frames_dropped": int(dropped),
        "playout_backlog_frames_at_end": max(backlog),
        "rtp_loss_pct_at_gateway": round(
            100.0
            * sum(s["packets_lost"] for s in rtp_stats)
            / max(1.0, sum(s["packets_expected"] for s in rtp_stats)),
            4,
        ),
        "jb_target_ms_mean": round(float(np.mean([s["jb_target_ms"] for s in rtp_stats])), 2),
        "concealed_frames": int(sum(s["concealed_frames"] for s in rtp_stats)),
        "jb_dropped_ms": round(sum(s["jb_dropped_ms"] for s in rtp_stats), 1),
        "jb_late_packets": int(sum(s["late"] for s in rtp_stats)),
        "jb_partial_frames": int(partial),
        "frames_dropped_queue": int(sum(s["frames_dropped"] for s in rtp_stats)),
        "send_jitter_p99_ms": round(tstats["send_jitter_p99_ms"], 2),
        "tick_work_p99_ms": round(tstats["tick_work_p99_ms"], 2),
        "ticks_skipped": int(tstats["ticks_skipped"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bridges", type=int, default=50, help="concurrent bridges of the load run (default 50)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="1 and 10 bridges for 4 s (smoke run)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--tasks", action="store_true", help="relay with tasks over frames()/play() (compare)")
    p.add_argument("--jitter-min-ms", type=float, default=7.5, help="bridged legs' jitter buffer floor")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON result")
    args = p.parse_args(argv)
    if args.quick:
        args.bridges, args.seconds, args.warmup = 10, 4.0, 1.0
    load_before = os.getloadavg()[0]
    kw: dict[str, Any] = {"in_tick": not args.tasks, "jitter_min_ms": args.jitter_min_ms}
    single = asyncio.run(run(1, args.seconds, args.warmup, **kw))
    load = asyncio.run(run(args.bridges, args.seconds, args.warmup, **kw))
    # the trade-off: a deeper jitter-buffer floor on the bridged legs (more delay, fewer gaps under jitter)
    deep = asyncio.run(
        run(args.bridges, args.seconds, args.warmup, in_tick=not args.tasks, jitter_min_ms=20.0)
    )
    result = {
        "benchmark": "bridge",
        "quick": args.quick,
        "target": "added delay p95 <= 40 ms; 50 bridges without loss",
        "single": single,
        "load": load,
        "load_jitter_floor_20ms": deep,
        "machine_load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    line = json.dumps(result)
    if args.json:
        print(line)
    else:
        print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
