"""Media benchmark: N concurrent answered calls from our UA to SIPp's UAS with rtp_echo.

    .venv/bin/python bench/media.py --calls 200 --seconds 20 --json
    .venv/bin/python bench/media.py --quick

Every call is a real SIP dialog (INVITE/200/ACK ... BYE) over UDP on loopback, and every call sends G.711
voice for the whole window; SIPp echoes it back, so each call also receives a full RTP stream. Measured:
`cpu_cores_used` (this process's CPU time / wall time while all calls are up: our UA + RTP only, SIPp runs
in its own process), `send_jitter_p99_ms` (actual send time minus the ideal 20 ms grid, every packet of
every call), `loss_pct` (RTP packets not received back, RFC 3550 counting), `setup_failures`.
Prints one JSON object and writes bench/results/media.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.audio import PCM, SAMPLE_RATE  # noqa: E402
from engine.errors import TelephonyError  # noqa: E402
from gateway.leg import SipCallLeg  # noqa: E402
from gateway.rtp import MediaTicker  # noqa: E402
from gateway.sip.ua import UserAgent  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "media.json"


def speech_like(seconds: float) -> PCM:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 10))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)
    return np.asarray(np.clip(x * env * 5000, -32768, 32767), dtype=np.int16)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sipp(calls: int, port: int, media_port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp not found: apt-get install sip-tester (or run `make peers`)")
    cmd = [
        sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mp", str(media_port), "-rtp_echo",
        "-m", str(calls), "-l", str(calls + 10), "-ci", "127.0.0.1", "-cp", str(free_port()),
        "-timeout", "600s", "-trace_err", "-error_file", str(log_dir / "sipp_err.log"),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def run(calls: int, seconds: float, cps: float) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="outcall-bench-"))
    sip_port, media_port = free_port(), 40000 + (os.getpid() % 2000) * 4
    sipp = start_sipp(calls, sip_port, media_port, log_dir)
    ua = UserAgent(bind_host="127.0.0.1", rtp_port_range=(20000, 30000), rtp_inactivity_timeout=60.0)
    await ua.start()
    voice = speech_like(seconds + 5.0)
    legs: list[SipCallLeg] = []
    failures: list[str] = []
    t_setup = time.perf_counter()
    try:
        await asyncio.sleep(0.3)  # sipp binds its port (no readiness signal on stdout in -bg-less mode)

        async def place(i: int) -> None:
            await asyncio.sleep(i / cps)
            leg = await ua.originate(f"sip:service@127.0.0.1:{sip_port}", ring_timeout=20.0)
            try:
                await asyncio.wait_for(leg.wait_answered(), 30.0)
            except (TelephonyError, TimeoutError) as e:
                failures.append(f"call {i}: {e}")
                await leg.hangup()
                return
            leg.play(voice)
            legs.append(leg)

        await asyncio.gather(*(place(i) for i in range(calls)))
        setup_s = time.perf_counter() - t_setup
        await asyncio.sleep(1.0)  # jitter buffers settle
        ticker = MediaTicker.get(ua.clock)
        ticker.reset_stats()
        base = [leg.media.stats() for leg in legs]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        tstats = ticker.stats()
        after = [leg.media.stats() for leg in legs]
    finally:
        await asyncio.gather(*(leg.hangup() for leg in legs), return_exceptions=True)
        await asyncio.gather(
            *(asyncio.wait_for(leg.wait_ended(), 10) for leg in legs), return_exceptions=True
        )
        await ua.close()
        try:
            sipp.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sipp.kill()
    expected = sum(a["packets_expected"] - b["packets_expected"] for a, b in zip(after, base, strict=True))
    lost = sum(a["packets_lost"] - b["packets_lost"] for a, b in zip(after, base, strict=True))
    sent = sum(a["packets_sent"] - b["packets_sent"] for a, b in zip(after, base, strict=True))
    return {
        "bench": "media",
        "calls": calls,
        "answered": len(legs),
        "seconds": seconds,
        "cpu_cores_used": round((cpu1 - cpu0) / (wall1 - wall0), 3),
        "cpu_per_call": round((cpu1 - cpu0) / (wall1 - wall0) / max(1, len(legs)), 5),
        "send_jitter_p50_ms": round(tstats["send_jitter_p50_ms"], 2),
        "send_jitter_p99_ms": round(tstats["send_jitter_p99_ms"], 2),
        "send_jitter_max_ms": round(tstats["send_jitter_max_ms"], 2),
        "tick_lateness_p99_ms": round(tstats["tick_lateness_p99_ms"], 2),
        "ticks_skipped": int(tstats.get("ticks_skipped", 0)),
        "rx_jitter_ms_mean": round(float(np.mean([a["jitter_ms"] for a in after])), 2) if after else None,
        "packets_sent": int(sent),
        "packets_expected_back": int(expected),
        "loss_pct": round(100.0 * lost / expected, 4) if expected else None,
        "setup_failures": len(failures),
        "setup_s": round(setup_s, 2),
        "failure_examples": failures[:3],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "peer": "sipp -sn uas -rtp_echo (same machine)",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cps", type=float, default=50.0, help="call setup rate")
    ap.add_argument("--quick", action="store_true", help="20 calls for 5 s")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/media.json")
    args = ap.parse_args()
    calls, seconds = (20, 5.0) if args.quick else (args.calls, args.seconds)
    result = asyncio.run(run(calls, seconds, args.cps))
    text = json.dumps(result, ensure_ascii=False, indent=None if args.json else 2)
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["setup_failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
