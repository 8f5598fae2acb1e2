"""NLU benchmark: accuracy on the held-out and through-ASR sets, latency, throughput and memory.

    .venv/bin/python bench/nlu.py --json [--threads 1] [--rules]

Measured on the shipped classifier (models/nlu/weights + var/models/nlu-base, int8): intent macro-F1 on
held-out zh / en and on the through-ASR set (held-out texts -> Kokoro -> 8 kHz µ-law + 15 dB noise ->
Whisper), stop_calling recall (the minimum over held-out, through-ASR and the hard variants in
models/nlu/data/stop_calling_hard.txt, each also reported), single-utterance
latency p50/p95 (classify_sync on one text, after warm-up), batched utterances/s (batches of 32), and the
process RSS once loaded (VmRSS; VmHWM too). The rules classifier's figures ride along for comparison.
Prints one JSON object and writes bench/results/nlu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.ports import ClassifyContext  # noqa: E402
from models.nlu.corpus import hard_stop_calling, load_asr_eval, load_splits  # noqa: E402
from models.nlu.rules import RulesClassifier  # noqa: E402
from models.nlu.train import evaluate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "nlu.json"
TARGETS = {
    "heldout_zh_macro_f1": 0.90,
    "heldout_en_macro_f1": 0.85,
    "asr_macro_f1": 0.85,
    "stop_calling_recall": 1.0,
    "latency_p95_ms": 40.0,
    "batched_utt_per_s": 100.0,
    "rss_mb": 400.0,
}


def rss_mb() -> tuple[float, float]:
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024
    return round(vals.get("VmRSS", 0.0), 1), round(vals.get("VmHWM", 0.0), 1)


class RulesSync:
    name = "rules-v1"

    def __init__(self) -> None:
        self.rules = RulesClassifier()

    def classify_sync(self, texts: list[str], ctx: ClassifyContext | None = None) -> list[Any]:
        return [self.rules.classify_one(t, ctx) for t in texts]


def accuracy(clf: Any) -> dict[str, Any]:
    _train, heldout = load_splits()
    held = evaluate(clf, heldout)
    asr = load_asr_eval()
    asr_m = evaluate(clf, asr) if asr else {}
    hard_cases = hard_stop_calling()
    hard = clf.classify_sync(hard_cases, None)
    hard_recall = sum(1 for p in hard if p.intent == "stop_calling") / len(hard_cases)
    recalls = [
        r
        for r in (
            held["all"]["stop_calling_recall"],
            asr_m.get("all", {}).get("stop_calling_recall"),
            hard_recall,
        )
        if r is not None
    ]
    return {
        "heldout_zh_macro_f1": held["zh"]["macro_f1"],
        "heldout_en_macro_f1": held["en"]["macro_f1"],
        "heldout_all_macro_f1": held["all"]["macro_f1"],
        "asr_macro_f1": asr_m.get("all", {}).get("macro_f1"),
        "asr_zh_macro_f1": asr_m.get("zh", {}).get("macro_f1"),
        "asr_en_macro_f1": asr_m.get("en", {}).get("macro_f1"),
        "asr_n": asr_m.get("all", {}).get("n", 0),
        "emotion_heldout_macro_f1": held["all"]["emotion"]["macro_f1"],
        "stop_calling_recall": min(recalls),
        "stop_calling_recall_heldout": held["all"]["stop_calling_recall"],
        "stop_calling_recall_asr": asr_m.get("all", {}).get("stop_calling_recall"),
        "stop_calling_recall_hard_variants": round(hard_recall, 4),
        "stop_calling_hard_variants": len(hard_cases),
        # do-not-call said on a reply of another intent (held-out / through-ASR): ends a call wrongly
        "stop_calling_false_positives_heldout": held["all"]["stop_calling_false_positives"],
        "stop_calling_false_positives_asr": asr_m.get("all", {}).get("stop_calling_false_positives"),
        "stop_calling_fp_rate_asr": asr_m.get("all", {}).get("stop_calling_fp_rate"),
        "asr_empty_transcripts": sum(1 for e in asr if not e.text.strip()),
    }


def speed(clf: Any, n_single: int = 200, n_batched: int = 640) -> dict[str, Any]:
    _train, heldout = load_splits()
    texts = [e.text for e in heldout]
    for t in texts[:10]:
        clf.classify_sync([t], None)
    lat = []
    for i in range(n_single):
        t0 = time.perf_counter()
        clf.classify_sync([texts[i % len(texts)]], None)
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    batch = [texts[i % len(texts)] for i in range(n_batched)]
    t0 = time.perf_counter()
    for i in range(0, len(batch), 32):
        clf.classify_sync(batch[i : i + 32], None)
    ups = len(batch) / (time.perf_counter() - t0)
    return {
        "latency_p50_ms": round(lat[len(lat) // 2], 2),
        "latency_p95_ms": round(lat[int(len(lat) * 0.95)], 2),
        "batched_utt_per_s": round(ups, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="NLU benchmark")
    ap.add_argument("--json", action="store_true", help="print JSON (always written to bench/results)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for inference")
    ap.add_argument("--models-dir", default=os.environ.get("OUTCALL_MODELS_DIR", "var/models"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rss0, _ = rss_mb()
    from models.nlu.classifier import TransformerClassifier

    t0 = time.perf_counter()
    clf = TransformerClassifier(Path(args.models_dir) / "nlu-base", threads=args.threads)
    load_s = time.perf_counter() - t0
    rss_loaded, _ = rss_mb()
    res: dict[str, Any] = {
        "classifier": f"{clf.name} {clf.version}",
        "threads": args.threads,
        "load_s": round(load_s, 2),
        "rss_mb": rss_loaded,
        "rss_before_load_mb": rss0,
    }
    res |= accuracy(clf)
    res |= speed(clf)
    res["rss_after_run_mb"], res["rss_peak_mb"] = rss_mb()
    clf.close()
    res["rules_v1"] = {k: v for k, v in accuracy(RulesSync()).items() if "f1" in k or "recall" in k}
    res["targets"] = TARGETS
    res["meets"] = {
        k: (res.get(k) is not None and (res[k] <= v if k in ("latency_p95_ms", "rss_mb") else res[k] >= v))
        for k, v in TARGETS.items()
    }
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "shared 2-core"}
    res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sys.stdout.write(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
