"""ASR accuracy on the labelled telephone corpus (tests/fixtures/audio), clean and degraded.

    .venv/bin/python bench/asr.py --json        # every speech clip, clean + degraded
    .venv/bin/python bench/asr.py --quick       # 8 clips
    .venv/bin/python bench/asr.py --full-window # Whisper's padded 30 s window for every clip (not written)
    .venv/bin/python bench/asr.py --throughput 3  # utterances/s, 3 callers at once, per threads/workers

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
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.asr.metrics import cer, edit_distance, norm  # noqa: E402
from models.asr.whisper import WhisperRecognizer  # noqa: E402
from tests.fixtures.audio.corpus import labels, load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "asr.json"


def transcribe_corpus(clips: list[dict[str, Any]], short_window: bool = True) -> dict[str, Any]:
    rec = WhisperRecognizer(ROOT / "var" / "models" / "whisper-base", short_window=short_window)
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


async def _throughput_run(
    rec: WhisperRecognizer, clips: list[dict[str, Any]], streams: int
) -> dict[str, Any]:
    import asyncio

    pcms = [(load(c["id"], degraded=True), c["language"] or "zh") for c in clips]
    lat: list[float] = []

    async def stream(k: int) -> None:
        for i in range(len(pcms)):
            pcm, lang = pcms[(i + k) % len(pcms)]
            t0 = time.perf_counter()
            await rec.transcribe(pcm, language=lang)
            lat.append(time.perf_counter() - t0)

    await rec.transcribe(pcms[0][0], language=pcms[0][1])  # warm
    t0 = time.perf_counter()
    await asyncio.gather(*(stream(k) for k in range(streams)))
    wall = time.perf_counter() - t0
    return {
        "streams": streams,
        "utterances": len(lat),
        "utt_per_s": round(len(lat) / wall, 2),
        "latency_p50_s": round(float(np.median(lat)), 3),
        "latency_p90_s": round(float(np.percentile(lat, 90)), 3),
    }


def throughput(clips: list[dict[str, Any]], streams: int) -> list[dict[str, Any]]:
    """Utterances/s with `streams` callers at once, per (cpu_threads, num_workers, short_window)."""
    import asyncio

    replies = [c for c in clips if c["class"] == "reply"]
    out = []
    for threads, workers, short in ((2, 1, True), (1, 2, True), (2, 2, True), (2, 1, False), (1, 2, False)):
        rec = WhisperRecognizer(
            ROOT / "var" / "models" / "whisper-base",
            cpu_threads=threads,
            num_workers=workers,
            short_window=short,
        )
        try:
            res = asyncio.run(_throughput_run(rec, replies, streams))
        finally:
            rec.close()
        out.append({"cpu_threads": threads, "num_workers": workers, "short_window": short, **res})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 speech clips")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument(
        "--throughput",
        type=int,
        default=0,
        metavar="N",
        help="instead: utterances/s with N concurrent callers per cpu_threads/num_workers setting",
    )
    ap.add_argument("--full-window", action="store_true", help="always encode Whisper's full 30 s window")
    args = ap.parse_args()
    clips = [c for c in labels() if c["text"]]
    if args.throughput:
        load_tp = os.getloadavg()[0]
        rows = throughput(clips, args.throughput)
        loads = [load_tp, os.getloadavg()[0]]
        print(json.dumps({"bench": "asr_throughput", "loadavg_1m": loads, "rows": rows}))
        return 0
    if args.quick:
        clips = clips[::3]
    load0 = os.getloadavg()[0]
    res = transcribe_corpus(clips, short_window=not args.full_window)
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
    result["short_window"] = not args.full_window
    if not args.quick and not args.full_window:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
