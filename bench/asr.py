"""ASR accuracy on the labelled telephone corpus (tests/fixtures/audio), clean and degraded.

    .venv/bin/python bench/asr.py --json        # every speech clip, clean + degraded
    .venv/bin/python bench/asr.py --quick       # 8 clips

CER = character edit distance / reference characters, after dropping punctuation and spaces and
lowercasing (Chinese and English alike). Engines: faster-whisper base (int8, var/models/whisper-base);
vosk when OUTCALL_VOSK_MODEL points to a model for the clip's language (none ships here: MODELS.md).
The transcripts are kept in the result, and bench/amd.py reuses them. Writes bench/results/asr.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.asr.whisper import WhisperRecognizer  # noqa: E402
from tests.fixtures.audio.corpus import labels, load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "asr.json"
_DROP = re.compile(r"[\s,.!?;:，。！？、；：…~'\"\-]+")


def norm(text: str) -> str:
    return _DROP.sub("", text.lower())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(ref: str, hyp: str) -> float:
    r, h = norm(ref), norm(hyp)
    return edit_distance(r, h) / max(1, len(r))


def transcribe_corpus(clips: list[dict[str, Any]]) -> dict[str, Any]:
    rec = WhisperRecognizer(ROOT / "var" / "models" / "whisper-base")
    rows = []
    t_all = time.perf_counter()
    try:
        for c in clips:
            for degraded in (False, True):
                pcm = load(c["id"], degraded=degraded)
                t0 = time.perf_counter()
                tr = rec.transcribe_sync(pcm, sample_rate=8000, language=c["language"] or "zh")
                rows.append(
                    {
                        "id": c["id"],
                        "class": c["class"],
                        "language": c["language"],
                        "degraded": degraded,
                        "ref": c["text"],
                        "hyp": tr.text,
                        "cer": round(cer(c["text"], tr.text), 3) if c["text"] else None,
                        "seconds": round(len(pcm) / 8000, 2),
                        "decode_s": round(time.perf_counter() - t0, 3),
                    }
                )
    finally:
        rec.close()
    return {"engine": rec.name, "rows": rows, "wall_s": round(time.perf_counter() - t_all, 1)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cond in (False, True):
        for lang in ("zh", "en"):
            sel = [
                r for r in rows if r["degraded"] is cond and r["language"] == lang and r["cer"] is not None
            ]
            if not sel:
                continue
            # corpus CER: total edits / total reference characters
            edits = sum(edit_distance(norm(r["ref"]), norm(r["hyp"])) for r in sel)
            chars = sum(len(norm(r["ref"])) for r in sel)
            out[f"{'degraded' if cond else 'clean'}_{lang}"] = {
                "cer": round(edits / max(1, chars), 4),
                "clips": len(sel),
                "exact": sum(1 for r in sel if r["cer"] == 0),
            }
    dec = [r["decode_s"] / max(0.1, r["seconds"]) for r in rows]
    out["rtf_p50"] = round(float(np.median(dec)), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 speech clips")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args()
    clips = [c for c in labels() if c["text"]]
    if args.quick:
        clips = clips[::3]
    load0 = os.getloadavg()[0]
    res = transcribe_corpus(clips)
    result = {
        "bench": "asr",
        "engines": {res["engine"]: summarize(res["rows"])},
        "vosk": "not measured: no zh/en vosk model installable here (set OUTCALL_VOSK_MODEL; MODELS.md)",
        "corpus": "tests/fixtures/audio (Kokoro zh/en speech; degraded: 300-3400 Hz, ±6 dB, 10-20 dB SNR "
        "white noise, 1 in 3 clipped, µ-law)",
        "wall_s": res["wall_s"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1m": load0},
        "transcripts": res["rows"],
    }
    summary = {k: v for k, v in result.items() if k != "transcripts"}
    print(json.dumps(summary if args.json else result, ensure_ascii=False, indent=None if args.json else 1))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
