"""Real-channel training transcripts: training-split texts -> Kokoro TTS -> 8 kHz µ-law + noise -> Whisper.

    python -m models.nlu.asr_train [--models var/models] [--per-intent 90] [--en-per-intent 20]

Writes models/nlu/data/asr_train.jsonl (committed; training reads it, so CI need not regenerate it), one
row per rendered example: {"text", "asr", "intent", "emotion", "lang", "voice", "snr_db"}. It is the
training-side twin of asr_eval.jsonl, kept apart from it on purpose:

- only texts of the training split (the held-out split is never rendered here);
- other voices than the eval set: the seven Mandarin Kokoro voices except zm_yunjian (the eval voice),
  rotated per text; English has one Kokoro voice (af_heart, also the eval's), so English rows differ from
  the eval only in text and noise;
- noise drawn per text between 10 and 20 dB SNR (the eval set is at a fixed 15 dB).

A stratified sample (`--per-intent` texts per zh intent, `--en-per-intent` per en intent, chosen by a stable
hash) keeps the run to about half an hour on 2 cores. The file is appended as it goes, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.nlu.asr_eval import measure, telephone_channel
from models.nlu.corpus import DATA_DIR, Example, load_splits, read_jsonl
from models.paths import models_dir

log = logging.getLogger(__name__)

TRAIN_VOICES_ZH = (
    "zf_xiaobei",
    "zf_xiaoni",
    "zf_xiaoxiao",
    "zf_xiaoyi",
    "zm_yunxi",
    "zm_yunxia",
    "zm_yunyang",
)
TRAIN_VOICE_EN = "af_heart"
SNR_RANGE_DB = (10.0, 20.0)
OUT_FILE = DATA_DIR / "asr_train.jsonl"


def _h(text: str, salt: str) -> int:
    return int(hashlib.sha1(f"{salt}:{text}".encode()).hexdigest()[:8], 16)


def choose(train: Sequence[Example], per_intent_zh: int, per_intent_en: int) -> list[Example]:
    """A stable stratified sample: up to N texts per (language, intent), in hash order."""
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for ex in train:
        groups[(ex.lang, ex.intent)].append(ex)
    out: list[Example] = []
    for key in sorted(groups):
        n = per_intent_zh if key[0] == "zh" else per_intent_en
        out.extend(sorted(groups[key], key=lambda e: _h(e.text, "pick"))[:n])
    return out


def voice_for(ex: Example) -> str:
    if ex.lang == "en":
        return TRAIN_VOICE_EN
    return TRAIN_VOICES_ZH[_h(ex.text, "voice") % len(TRAIN_VOICES_ZH)]


def snr_for(ex: Example) -> float:
    lo, hi = SNR_RANGE_DB
    return round(lo + (hi - lo) * (_h(ex.text, "snr") % 1000) / 999.0, 1)


def load_asr_train(path: Path = OUT_FILE) -> list[dict[str, str]]:
    """Rows of asr_train.jsonl ([] when it is absent: training then uses synthetic noise only)."""
    if not path.is_file():
        return []
    return [{k: str(v) for k, v in r.items()} for r in read_jsonl(path)]


def build(models: Path, out: Path, per_intent_zh: int, per_intent_en: int) -> dict[str, Any]:
    from models.asr.whisper import WhisperRecognizer
    from models.tts.kokoro import KokoroSynthesizer

    train, heldout = load_splits()
    held = {(e.lang, e.text) for e in heldout}
    todo = [e for e in choose(train, per_intent_zh, per_intent_en) if (e.lang, e.text) not in held]
    done = {(r["lang"], r["text"]) for r in load_asr_train(out)}
    todo = [e for e in todo if (e.lang, e.text) not in done]
    log.info("%d to render (%d already in %s)", len(todo), len(done), out)
    synth = KokoroSynthesizer(models / "kokoro", threads=2)
    rec = WhisperRecognizer(models / "whisper-base", cpu_threads=2)
    t0 = time.perf_counter()
    try:
        with out.open("a", encoding="utf-8") as f:
            for i, ex in enumerate(todo):
                voice, snr = voice_for(ex), snr_for(ex)
                pcm = synth.synthesize_sync(ex.text, voice=voice)
                noisy = telephone_channel(pcm, snr, _h(ex.text, "noise"))
                heard = rec.transcribe_sync(noisy, sample_rate=8000, language=ex.lang).text
                row = {
                    "text": ex.text,
                    "asr": heard,
                    "intent": ex.intent,
                    "emotion": ex.emotion,
                    "lang": ex.lang,
                    "voice": voice,
                    "snr_db": snr,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                if (i + 1) % 25 == 0:
                    log.info("%d/%d (%.0fs)", i + 1, len(todo), time.perf_counter() - t0)
    finally:
        synth.close()
        rec.close()
    rows = load_asr_train(out)
    examples = [Example(r["text"], r["intent"], r["emotion"], r["lang"]) for r in rows]
    # empty transcripts and CER per language, as the eval set reports them (no per-utterance timings)
    result = {k: v for k, v in measure(examples, [r["asr"] for r in rows], []).items() if "asr_s" not in k}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.nlu.asr_train", description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None, help="models folder (default: var/models)")
    ap.add_argument("--out", type=Path, default=OUT_FILE)
    ap.add_argument("--per-intent", type=int, default=90, help="zh texts per intent")
    ap.add_argument("--en-per-intent", type=int, default=20, help="en texts per intent")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = build(args.models or models_dir(), args.out, args.per_intent, args.en_per_intent)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
