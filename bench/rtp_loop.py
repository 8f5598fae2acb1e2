"""RTP media-loop benchmark: N pairs of RtpSessions on loopback in one process, both directions talking.

    .venv/bin/python bench/rtp_loop.py --sessions 200 --seconds 20
    .venv/bin/python bench/rtp_loop.py --quick --json

`sessions` is the number of pairs: each gateway-side session has its peer (the "phone") in the same process,
so the process carries 2 x sessions RTP endpoints and the CPU figure covers both ends. Every endpoint
sends G.711 voice continuously (a looped speech-like clip) and every gateway-side frames() stream is read
by its own task, as the call engine would. Prints one JSON object and writes bench/results/rtp_loop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import PCM, SAMPLE_RATE
from gateway.rtp import Histogram, MediaTicker, RtpSession

RESULTS = Path(__file__).resolve().parent / "results" / "rtp_loop.json"


def speech_like(seconds: float = 2.0, seed: int = 7) -> PCM:
    """Harmonic 'vowels' with a moving pitch and a syllable-rate envelope (no model needed)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    x = x * env + 0.02 * rng.standard_normal(n)
    x = x / np.max(np.abs(x)) * 0.4 * 32767
    out: PCM = x.astype(np.int16)
    return out


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


async def run(pairs: int, seconds: float, warmup: float, consume: bool) -> dict[str, Any]:
    _raise_nofile(4 * pairs + 256)
    clip = speech_like()
    gw: list[RtpSession] = []
    peers: list[RtpSession] = []
    for i in range(pairs):
        a = await RtpSession.create(call_id=f"gw-{i}")
        b = await RtpSession.create(call_id=f"peer-{i}")
        a.set_remote(b.local_host, b.local_port, codec="PCMU", payload_type=0)
        b.set_remote(a.local_host, a.local_port, codec="PCMU", payload_type=0)
        gw.append(a)
        peers.append(b)
    everyone = gw + peers
    stop = asyncio.Event()
    frames_read = 0

    async def reader(s: RtpSession) -> None:
        nonlocal frames_read
        async for _ in s.frames():
            frames_read += 1

    async def refill() -> None:
        while not stop.is_set():
            for s in everyone:
                if s.playout.queued_frames < 25:
                    s.playout.play(clip)
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    readers = [asyncio.create_task(reader(s)) for s in gw] if consume else []
    refiller = asyncio.create_task(refill())
    for s in everyone:
        s.start()
    ticker = MediaTicker.get()
    await asyncio.sleep(warmup)
    ticker.reset_stats()
    for s in everyone:
        s.send_jitter.reset()
    sent0 = sum(s.stats()["packets_sent"] for s in everyone)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    user = ru1.ru_utime - ru0.ru_utime
    system = ru1.ru_stime - ru0.ru_stime
    cpu = user + system
    sent1 = sum(s.stats()["packets_sent"] for s in everyone)
    tstats = ticker.stats()
    stop.set()
    await refiller
    # let in-flight packets land before reading receiver statistics
    await asyncio.sleep(0.1)
    stats = [s.stats() for s in everyone]
    for s in everyone:
        await s.close()
    if readers:
        await asyncio.gather(*readers)
    expected = sum(st["packets_expected"] for st in stats)
    lost = sum(st["packets_lost"] for st in stats)
    hist = Histogram()
    for s in everyone:
        hist.merge(s.send_jitter)
    frames_out = sum(st["frames_out"] for st in stats) or 1.0
    return {
        "benchmark": "rtp_loop",
        "sessions": pairs,
        "endpoints": 2 * pairs,
        "seconds": round(wall, 3),
        "cpu_cores_used": round(cpu / wall, 3),
        "cpu_user_share": round(user / cpu, 3) if cpu else 0.0,
        "cpu_ms_per_endpoint_second": round(1000 * cpu / wall / (2 * pairs), 4),
        "send_jitter_p50_ms": round(hist.percentile_ms(50), 2),
        "send_jitter_p99_ms": round(hist.percentile_ms(99), 2),
        "send_jitter_max_ms": round(hist.max_s * 1000, 2),
        "tick_work_mean_ms": round(tstats["tick_work_mean_ms"], 2),
        "tick_work_p99_ms": round(tstats["tick_work_p99_ms"], 2),
        "ticks_skipped": int(tstats["ticks_skipped"]),
        "packets_per_second": round((sent1 - sent0) / wall, 1),
        "loss_pct": round(100.0 * lost / expected, 4) if expected else 0.0,
        "late": int(sum(st["late"] for st in stats)),
        "concealed_pct": round(100.0 * sum(st["concealed_frames"] for st in stats) / frames_out, 3),
        "frames_dropped_slow_consumer": int(sum(st["frames_dropped"] for st in stats[:pairs])),
        "frames_read": frames_read,
        "jitter_ms_mean": round(float(np.mean([st["jitter_ms"] for st in stats])), 3),
        "consume": consume,
        "loop": type(asyncio.get_running_loop()).__module__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=200, help="pairs of sessions (default 200)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds (default 20)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="20 pairs for 3 s (smoke run)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--no-consume", action="store_true", help="do not read the frames() streams")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop if installed")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON result")
    args = p.parse_args(argv)
    if args.quick:
        args.sessions, args.seconds, args.warmup = 20, 3.0, 1.0
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    result = asyncio.run(run(args.sessions, args.seconds, args.warmup, not args.no_consume))
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
