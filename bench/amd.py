"""Answering-machine / announcement detection accuracy per class on the corpus (clean and degraded).

    .venv/bin/python bench/amd.py --json
    .venv/bin/python bench/amd.py --quick     # reuse bench/results/asr.json transcripts only

Each clip is transcribed by faster-whisper base (transcripts of speech clips are reused from
bench/results/asr.json when present) and passed to engine.call.amd.decide, exactly as the session does in
its AMD window. Expected: replies, backchannels, music and noise -> no decision (a human, or nothing);
carrier announcements -> their disposition; voicemail greetings and phone assistants -> voicemail.
The detector is text-only (no beep/cadence detector yet). Writes bench/results/amd.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.asr import RESULTS as ASR_RESULTS  # noqa: E402
from bench.asr import transcribe_corpus  # noqa: E402
from engine.call.amd import decide  # noqa: E402
from tests.fixtures.audio.corpus import labels  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "amd.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only clips already transcribed in asr.json")
    ap.add_argument("--json", action="store_true", help="print only the summary")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    engine = "whisper-base"
    if ASR_RESULTS.exists():
        rows = json.loads(ASR_RESULTS.read_text(encoding="utf-8"))["transcripts"]
    have = {r["id"] for r in rows}
    missing = [c for c in labels() if c["id"] not in have]
    if missing and not args.quick:
        res = transcribe_corpus(missing)
        engine = res["engine"]
        rows += res["rows"]
    by_id = {c["id"]: c for c in labels()}
    per_class: dict[str, dict[str, int]] = {}
    errors = []
    for r in rows:
        c = by_id[r["id"]]
        d = decide(r["hyp"])
        got = d.disposition.value if d is not None else None
        ok = got == c["amd"]
        key = f"{c['class']}{'/degraded' if r['degraded'] else ''}"
        s = per_class.setdefault(key, {"n": 0, "correct": 0})
        s["n"] += 1
        s["correct"] += ok
        if not ok:
            errors.append(
                {"id": r["id"], "degraded": r["degraded"], "heard": r["hyp"], "got": got, "want": c["amd"]}
            )
    total = sum(s["n"] for s in per_class.values())
    correct = sum(s["correct"] for s in per_class.values())
    result = {
        "bench": "amd",
        "asr_engine": engine,
        "accuracy": round(correct / max(1, total), 3),
        "n": total,
        "per_class": {
            k: {**v, "accuracy": round(v["correct"] / v["n"], 3)} for k, v in sorted(per_class.items())
        },
        "errors": errors,
        "detector": "text rules (engine.call.amd) on the ASR transcript; no acoustic beep detector",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 1))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
