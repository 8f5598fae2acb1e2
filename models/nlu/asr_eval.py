"""Build the through-ASR NLU eval set: held-out texts -> Kokoro TTS -> 8 kHz µ-law + noise -> Whisper.

    python -m models.nlu.asr_eval [--models var/models] [--snr-db 15] [--limit N]
    python -m models.nlu.asr_eval --measure --audio-cache var/cache/asr_eval_audio.npz   # numbers only

Writes models/nlu/data/asr_eval.jsonl (committed, so CI need not regenerate it), one row per held-out
example: {"text", "asr", "intent", "emotion", "lang", "voice"}. Voices: zm_yunjian (zh), af_heart (en).
The noise is white Gaussian at --snr-db below the utterance's RMS, seeded per text (reproducible).
Takes a few minutes on 2 cores (TTS ~0.4 RTF + Whisper ~0.7 s per utterance).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.audio import PCM, ulaw_decode, ulaw_encode
from models.asr.metrics import edit_distance, norm
from models.nlu.corpus import DATA_DIR, Example, load_heldout, write_jsonl
from models.paths import models_dir

if TYPE_CHECKING:
    from models.asr.whisper import WhisperRecognizer

log = logging.getLogger(__name__)

VOICES = {"zh": "zm_yunjian", "en": "af_heart"}


def telephone_channel(pcm: PCM, snr_db: float, seed: int) -> PCM:
    """8 kHz int16 -> G.711 µ-law round trip, plus white noise `snr_db` below the speech RMS."""
    x = ulaw_decode(ulaw_encode(pcm)).astype(np.float64)
    active = x[np.abs(x) > 64]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, rms / (10 ** (snr_db / 20.0)) if rms else 0.0, size=x.shape)
    y = np.clip(x + noise, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(y))


def render_audio(
    models: Path, heldout: Sequence[Example], snr_db: float = 15.0, cache: Path | None = None
) -> list[PCM]:
    """The noisy 8 kHz telephone audio for each held-out example (Kokoro -> µ-law + noise).

    With `cache` (an .npz), audio already rendered for the same (text, voice, snr) is read back instead
    of synthesised again, and new audio is added to it: the measurement loop then costs only the ASR.
    """
    from models.tts.kokoro import KokoroSynthesizer

    keys = [f"{VOICES[ex.lang]}|{snr_db:g}|{ex.text}" for ex in heldout]
    stored: dict[str, PCM] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            names = [str(k) for k in data["keys"]]
            stored = {k: data[f"a{i}"] for i, k in enumerate(names) if k in set(keys)}
    missing = [i for i, k in enumerate(keys) if k not in stored]
    if missing:
        synth = KokoroSynthesizer(models / "kokoro", threads=2)
        t0 = time.perf_counter()
        try:
            for n, i in enumerate(missing):
                ex = heldout[i]
                pcm = synth.synthesize_sync(ex.text, voice=VOICES[ex.lang])
                seed = int(hashlib.sha1(ex.text.encode()).hexdigest()[:8], 16)
                stored[keys[i]] = telephone_channel(pcm, snr_db, seed)
                if (n + 1) % 20 == 0:
                    log.info("tts %d/%d (%.0fs)", n + 1, len(missing), time.perf_counter() - t0)
        finally:
            synth.close()
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            arrays = {f"a{i}": stored[k] for i, k in enumerate(keys)}
            np.savez_compressed(cache, keys=np.array(keys), **arrays)  # type: ignore[arg-type]
    return [stored[k] for k in keys]


def transcribe_all(
    rec: WhisperRecognizer, heldout: Sequence[Example], audio: Sequence[PCM]
) -> tuple[list[str], list[float]]:
    """(transcripts, seconds per utterance) for each held-out example."""
    texts: list[str] = []
    secs: list[float] = []
    t0 = time.perf_counter()
    for i, (ex, pcm) in enumerate(zip(heldout, audio, strict=True)):
        t = time.perf_counter()
        texts.append(rec.transcribe_sync(pcm, sample_rate=8000, language=ex.lang).text)
        secs.append(time.perf_counter() - t)
        if (i + 1) % 50 == 0:
            log.info("asr %d/%d (%.0fs)", i + 1, len(heldout), time.perf_counter() - t0)
    return texts, secs


def measure(heldout: Sequence[Example], heard: Sequence[str], secs: Sequence[float]) -> dict[str, Any]:
    """Empty transcripts and corpus CER (edits / reference characters) per language."""
    out: dict[str, Any] = {"utterances": len(heldout)}
    for lang in ("zh", "en", "all"):
        sel = [(ex, h) for ex, h in zip(heldout, heard, strict=True) if lang in ("all", ex.lang)]
        if not sel:
            continue
        edits = sum(edit_distance(norm(ex.text), norm(h)) for ex, h in sel)
        chars = sum(len(norm(ex.text)) for ex, _ in sel)
        out[lang] = {
            "n": len(sel),
            "empty": sum(1 for _, h in sel if not h.strip()),
            "exact": sum(1 for ex, h in sel if norm(ex.text) == norm(h)),
            "cer": round(edits / max(1, chars), 4),
        }
    out["asr_s_mean"] = round(float(np.mean(secs)), 3) if secs else 0.0
    out["asr_s_p50"] = round(float(np.median(secs)), 3) if secs else 0.0
    return out


def build(
    models: Path,
    out: Path | None,
    snr_db: float = 15.0,
    limit: int | None = None,
    cache: Path | None = None,
    **recognizer: Any,
) -> dict[str, Any]:
    """Render, transcribe, and (when `out` is set) write the eval set; returns the measurement."""
    from models.asr.whisper import WhisperRecognizer

    heldout = load_heldout()
    if limit:
        heldout = heldout[:limit]
    audio = render_audio(models, heldout, snr_db, cache)
    rec = WhisperRecognizer(models / "whisper-base", cpu_threads=2, **recognizer)
    try:
        heard, secs = transcribe_all(rec, heldout, audio)
    finally:
        rec.close()
    if out is not None:
        rows: list[dict[str, object]] = [
            {
                "text": ex.text,
                "asr": h,
                "intent": ex.intent,
                "emotion": ex.emotion,
                "lang": ex.lang,
                "voice": VOICES[ex.lang],
            }
            for ex, h in zip(heldout, heard, strict=True)
        ]
        write_jsonl(out, rows)
        log.info("wrote %s (%d rows)", out, len(rows))
    result = measure(heldout, heard, secs)
    result["errors"] = [
        {"text": ex.text, "asr": h} for ex, h in zip(heldout, heard, strict=True) if norm(ex.text) != norm(h)
    ]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.nlu.asr_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None, help="models folder (default: var/models)")
    ap.add_argument("--out", type=Path, default=DATA_DIR / "asr_eval.jsonl")
    ap.add_argument("--snr-db", type=float, default=15.0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument(
        "--measure",
        action="store_true",
        help="only measure (empty transcripts, CER vs the text, seconds per utterance); write no jsonl",
    )
    ap.add_argument(
        "--audio-cache",
        type=Path,
        default=None,
        help="an .npz keeping the rendered noisy audio between runs (e.g. var/cache/asr_eval_audio.npz)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load1 = os.getloadavg()[0]
    result = build(
        args.models or models_dir(),
        None if args.measure else args.out,
        args.snr_db,
        args.limit,
        args.audio_cache,
    )
    result["snr_db"] = args.snr_db
    result["loadavg_1m"] = [round(load1, 2), round(os.getloadavg()[0], 2)]
    errors = result.pop("errors")
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    for e in errors:
        log.info("  %s => %s", e["text"], e["asr"] or "(empty)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
