"""Speech model benchmark: load times, Kokoro RTF, Whisper latency per utterance, RSS.

    .venv/bin/python bench/speech_models.py [--dest var/models] [--rounds 3] [--threads 2]

Renders Mandarin prompts with Kokoro (zm_yunjian), passes them through 8 kHz µ-law and transcribes them
with Whisper base (int8, beam 1), reporting p50/p90 latency and CER. Prints one JSON object and writes
bench/results/speech_models.json. Run it on a quiet machine: other processes skew the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from engine.audio import ulaw_decode, ulaw_encode
from models.asr.whisper import WhisperRecognizer
from models.install import install
from models.tts.kokoro import KokoroSynthesizer

RESULTS = Path(__file__).resolve().parent / "results" / "speech_models.json"
PROMPTS = [
    "我们这周六有一节免费的试听课",
    "您好，我是学习中心的老师，请问您是孩子的家长吗？",
    "好的，那我把地址发到您的手机上，请注意查收。",
    "请问您现在方便接听电话吗？",
    "这节课是针对五到八岁孩子的英语启蒙课程，一共四十五分钟。",
]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cer(hyp: str, ref: str) -> float:
    h, r = re.sub(r"[\W_]+", "", hyp), re.sub(r"[\W_]+", "", ref)
    prev = list(range(len(r) + 1))
    for i, ch in enumerate(h, 1):
        cur = [i]
        for j, cr in enumerate(r, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ch != cr)))
        prev = cur
    return prev[-1] / max(1, len(r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dest", type=Path, default=Path("var/models"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    install(args.dest)
    out: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads}
    rss0 = rss_mb()

    t0 = time.perf_counter()
    kokoro = KokoroSynthesizer(args.dest / "kokoro", threads=args.threads)
    out["kokoro_load_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    kokoro.warm(("zh",))
    out["kokoro_warm_s"] = round(time.perf_counter() - t0, 3)
    out["rss_after_kokoro_mb"] = round(rss_mb(), 1)

    rtfs: list[float] = []
    audio = []
    for text in PROMPTS:
        t0 = time.perf_counter()
        pcm = kokoro.synthesize_sync(text)
        dt = time.perf_counter() - t0
        rtfs.append(dt / (len(pcm) / 8000))
        audio.append(ulaw_decode(ulaw_encode(pcm)))
    out["kokoro_rtf_p50"] = round(statistics.median(rtfs), 3)
    out["kokoro_rtf"] = [round(x, 3) for x in rtfs]

    t0 = time.perf_counter()
    whisper = WhisperRecognizer(args.dest / "whisper-base", cpu_threads=args.threads)
    out["whisper_load_s"] = round(time.perf_counter() - t0, 3)
    whisper.transcribe_sync(audio[0])  # warm-up
    latencies: list[float] = []
    cers: list[float] = []
    for _ in range(args.rounds):
        for text, pcm in zip(PROMPTS, audio, strict=True):
            t0 = time.perf_counter()
            result = whisper.transcribe_sync(pcm)
            latencies.append(time.perf_counter() - t0)
            cers.append(cer(result.text, text))
    latencies.sort()
    out["utterance_s_mean"] = round(sum(len(a) for a in audio) / len(audio) / 8000, 2)
    out["whisper_latency_p50_s"] = round(statistics.median(latencies), 3)
    out["whisper_latency_p90_s"] = round(latencies[int(0.9 * (len(latencies) - 1))], 3)
    out["whisper_cer_mean"] = round(sum(cers) / len(cers), 4)
    out["rss_total_mb"] = round(rss_mb(), 1)
    out["rss_baseline_mb"] = round(rss0, 1)
    text = json.dumps(out, ensure_ascii=False, indent=2)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
