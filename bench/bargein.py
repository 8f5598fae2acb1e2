"""Barge-in benchmark over real SIP/RTP on loopback.

    .venv/bin/python bench/bargein.py --json            # 20 barge-ins + 10 echo calls
    .venv/bin/python bench/bargein.py --quick           # 5 + 3

Part 1, latency: our UA dials baresip (a real softphone) playing a recorded reply (espeak-ng) that starts
while the robot speaks its interruptible greeting (trial-class-en, espeak-ng prompts). Measured per call:
the callee's speech onset in our inbound audio (the first inbound frame above -40 dBFS, as the leg hands
it to the session, i.e. after the jitter buffer) -> the last non-silent frame we sent before playout
paused. Fields bargein_p50_ms, bargein_p95_ms, n. The pause happens at the endpointer's speech onset
(energy gate + Silero VAD when installed); ASR is not on this path (the recogniser here returns fixed
words so the prompt is then cleared).

Part 2, false barge-ins: calls to SIPp's UAS with -rtp_echo (our prompts come straight back), each held
through the disclosure and the greeting; any playout pause or ASR request is a false barge-in.

Writes bench/results/bargein.json (not with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from peers import Baresip, SippServer  # noqa: E402

import dialplans  # noqa: E402
from engine.audio import PCM, rms_dbfs  # noqa: E402
from engine.call.session import CallSession  # noqa: E402
from engine.ports import Transcript, Vad  # noqa: E402
from gateway.sip.ua import UserAgent  # noqa: E402
from models.nlu.rules import RulesClassifier  # noqa: E402
from models.tts.espeak import EspeakSynthesizer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bargein.json"
REPLY = "No, I am not interested, please stop calling me."


class FixedRecognizer:
    name = "fixed-text (not on the barge-in path)"

    def __init__(self) -> None:
        self.calls = 0

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        self.calls += 1
        return Transcript(text="no, I am not interested", engine=self.name)


class EnglishEspeak:
    name = "espeak-ng"

    def __init__(self) -> None:
        self.inner = EspeakSynthesizer(voice="en-us")

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        return await self.inner.render(text, speed=speed)


def load_vad() -> Vad | None:
    try:
        from models.vad.silero import load_silero

        vad = load_silero(ROOT / "var" / "models")
        vad.stream()
        return vad
    except Exception:
        return None


class Probe:
    """Timestamps what the session hears (after the jitter buffer) and what the playout sends."""

    def __init__(self, leg: Any) -> None:
        self.inbound: list[tuple[float, float]] = []
        self.voiced_out: list[float] = []
        self.pauses = 0
        playout = leg.playout
        next_frame, pause = playout.next_frame, playout.pause
        frames = leg.frames

        def probed_next() -> tuple[PCM, bool]:
            frame, voiced = next_frame()
            if voiced:
                self.voiced_out.append(time.perf_counter())
            return frame, voiced

        def probed_pause() -> None:
            self.pauses += 1
            pause()

        async def probed_frames() -> AsyncIterator[PCM]:
            async for f in frames():
                self.inbound.append((time.perf_counter(), rms_dbfs(f)))
                yield f

        playout.next_frame = probed_next
        playout.pause = probed_pause
        leg.frames = probed_frames

    def latency_ms(self) -> float | None:
        onset = next((t for t, lvl in self.inbound if lvl > -40.0), None)
        if onset is None:
            return None
        after = [t for t in self.voiced_out if t >= onset]
        if not after:
            return 0.0
        last = after[0]
        for t in after[1:]:
            if t - last > 0.2:  # the first gap: playout paused (the next prompt starts much later)
                break
            last = t
        return (last - onset) * 1000.0


def speech_wav(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us+f3", "-s", "165", "-w", str(path), REPLY], check=True)
    return path


async def one_bargein(ua: UserAgent, wav: Path, delay_s: float, vad: Vad | None, work: Path) -> float | None:
    phone = Baresip(workdir=work, audio=wav, delay_s=delay_s, tail_s=8.0).start()
    try:
        leg = await ua.originate(phone.uri, caller_id="1001")
        probe = Probe(leg)
        session = CallSession(
            leg,
            dialplans.get("trial-class-en"),
            recognizer=FixedRecognizer(),
            classifier=RulesClassifier(),
            synthesizer=EnglishEspeak(),
            vad=vad,
        )
        task = asyncio.ensure_future(session.run())
        await asyncio.sleep(delay_s + 4.0)
        await leg.hangup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
        return probe.latency_ms()
    finally:
        phone.stop()


async def one_echo_call(ua: UserAgent, uri: str, vad: Vad | None, hold_s: float) -> tuple[int, int, int]:
    leg = await ua.originate(uri, caller_id="1001")
    probe = Probe(leg)
    rec = FixedRecognizer()
    session = CallSession(
        leg,
        dialplans.get("trial-class-en"),
        recognizer=rec,
        classifier=RulesClassifier(),
        synthesizer=EnglishEspeak(),
        vad=vad,
    )
    task = asyncio.ensure_future(session.run())
    await asyncio.sleep(hold_s)
    await leg.hangup()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 20)
    return probe.pauses, rec.calls, len(probe.voiced_out)


async def run(trials: int, echo_calls: int, batch: int) -> dict[str, Any]:
    for tool in ("baresip", "sipp", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install baresip-core sip-tester espeak-ng")
    work = Path(tempfile.mkdtemp(prefix="outcall-bargein-"))
    wav = speech_wav(work / "reply.wav")
    vad = load_vad()
    ua = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=30.0)
    await ua.start()
    rng = random.Random(6)
    lat: list[float] = []
    misses = 0
    load0 = os.getloadavg()[0]
    try:
        for b in range(0, trials, batch):
            n = min(batch, trials - b)
            # the disclosure (not interruptible) ends ~3.3 s after answer; the greeting runs to ~9 s
            delays = [rng.uniform(4.0, 7.0) for _ in range(n)]
            got = await asyncio.gather(
                *(one_bargein(ua, wav, d, vad, work / f"t{b + i}") for i, d in enumerate(delays))
            )
            for v in got:
                if v is None:
                    misses += 1
                else:
                    lat.append(v)
        server = SippServer(
            "uas_answer_echo.xml", calls=echo_calls, rtp_echo=True, timeout_s=120, workdir=work / "sipp"
        )
        server.start()
        try:
            echo = await asyncio.gather(
                *(one_echo_call(ua, server.uri(), vad, 10.0) for _ in range(echo_calls))
            )
        finally:
            server.stop()
    finally:
        await ua.close()
    arr = np.array(lat) if lat else np.array([np.nan])
    return {
        "bench": "bargein",
        "bargein_p50_ms": round(float(np.percentile(arr, 50)), 1),
        "bargein_p95_ms": round(float(np.percentile(arr, 95)), 1),
        "bargein_max_ms": round(float(np.max(arr)), 1),
        "n": len(lat),
        "not_detected": misses,
        "concurrent_calls": batch,
        "vad": vad.name if vad is not None else "energy only",
        "asr_engine": FixedRecognizer.name,
        "onset_measured_at": "inbound frame handed to the session (after the jitter buffer)",
        "echo_calls": echo_calls,
        "echo_false_bargeins": sum(1 for p, c, _ in echo if p or c),
        "echo_playout_pauses": sum(p for p, _, _ in echo),
        "echo_asr_requests": sum(c for _, c, _ in echo),
        "echo_voiced_frames_sent": sum(v for _, _, v in echo),
        "peers": "baresip 1.0 callee (espeak-ng reply WAV); sipp -sn uas -rtp_echo",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1m": load0},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--echo-calls", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5, help="barge-in calls at once")
    ap.add_argument("--quick", action="store_true", help="5 barge-ins, 3 echo calls")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args()
    trials, echo_calls = (5, 3) if args.quick else (args.trials, args.echo_calls)
    result = asyncio.run(run(trials, echo_calls, args.batch))
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if result["echo_false_bargeins"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
