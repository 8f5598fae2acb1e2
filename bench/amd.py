"""Answering-machine / announcement detection accuracy per class on the corpus (clean and degraded).

    .venv/bin/python bench/amd.py --json
    .venv/bin/python bench/amd.py --quick     # reuse bench/results/asr.json transcripts only

Each clip is transcribed by faster-whisper base (transcripts of speech clips are reused from
bench/results/asr.json when present) and passed to engine.call.amd.decide, exactly as the session does in
its AMD window. Expected: replies, backchannels, music and noise -> no decision (a human, or nothing);
carrier announcements -> their disposition; voicemail greetings and phone assistants -> voicemail.
The acoustic part (no ASR) runs engine.call.amd.AcousticAmd on every clip the way the session feeds it
(Endpointer speech decisions per 20 ms frame): greeting cadence per class, the voicemail decisions it
makes, and the beep detector's precision/recall on the corpus plus generated audio (beeps 400-2000 Hz,
0.15-1.5 s, 10-20 dB SNR, through µ-law; DTMF, Chinese/US ringback and tunes as negatives).
Writes bench/results/amd.json.
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

import numpy as np  # noqa: E402

from bench.asr import RESULTS as ASR_RESULTS  # noqa: E402
from bench.asr import transcribe_corpus  # noqa: E402
from engine.audio import PCM, frames_of, ulaw_decode, ulaw_encode  # noqa: E402
from engine.call.amd import AcousticAmd, decide  # noqa: E402
from engine.call.beep import ToneDetector  # noqa: E402
from engine.call.early import EarlyMediaMonitor  # noqa: E402
from engine.call.turns import Endpointer  # noqa: E402
from engine.dtmf import COL_FREQS, ROW_FREQS  # noqa: E402
from tests.fixtures.audio.corpus import labels, load  # noqa: E402
from tests.fixtures.audio.make_corpus import BEEP_AFTER  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "amd.json"


RATE = 8000
_DTMF_ROWS = ROW_FREQS
_DTMF_COLS = COL_FREQS


def _sine(hz: float, seconds: float, amp: float) -> Any:
    t = np.arange(round(seconds * RATE)) / RATE
    return amp * np.sin(2 * np.pi * hz * t)


def _line(x: Any, snr_db: float | None, power: float, rng: np.random.Generator) -> PCM:
    if snr_db is not None:
        x = x + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    return ulaw_decode(ulaw_encode(np.clip(np.round(x), -32768, 32767).astype(np.int16)))


def _beeps(pcm: PCM) -> int:
    det = ToneDetector()
    frames = frames_of(np.concatenate([pcm, np.zeros(800, np.int16)]))
    return sum(1 for f in frames if (ev := det.feed(f)) is not None and ev.kind == "beep")


def generated(rng: np.random.Generator) -> list[tuple[str, PCM, int]]:
    """(source, audio, beeps in it): the beep grid and the tonal negatives."""
    out: list[tuple[str, PCM, int]] = []
    z = np.zeros
    for hz in (400.0, 500.0, 620.0, 850.0, 1000.0, 1200.0, 1400.0, 1750.0, 2000.0):
        for seconds in (0.15, 0.25, 0.5, 1.0, 1.5):
            for snr in (10.0, 15.0, 20.0):
                amp = rng.uniform(2000, 16000)
                lead = z(round(rng.uniform(0.2, 0.6) * RATE))
                x = np.concatenate([lead, _sine(hz, seconds, amp), z(RATE // 2)])
                out.append(("beep", _line(x, snr, amp**2 / 2, rng), 1))
    for r in _DTMF_ROWS:
        for c in _DTMF_COLS:
            for seconds in (0.1, 0.3, 1.0):
                twist = rng.uniform(-7, 7)
                x = _sine(r, seconds, 6000) + _sine(c, seconds, 6000 * 10 ** (twist / 20))
                out.append(("dtmf", _line(np.concatenate([z(2000), x, z(4000)]), 20.0, 6000.0**2, rng), 0))
    for rb_snr in (10.0, 15.0, 20.0, None):
        cn = np.concatenate([np.concatenate([_sine(450, 1.0, 7000), z(4 * RATE)]) for _ in range(3)])
        us = np.concatenate(
            [np.concatenate([_sine(440, 2.0, 3500) + _sine(480, 2.0, 3500), z(4 * RATE)])] * 2
        )
        out.append(("ringback_cn", _line(cn, rb_snr, 7000.0**2 / 2, rng), 0))
        out.append(("ringback_us", _line(us, rb_snr, 3500.0**2, rng), 0))
    scale = (523.3, 587.3, 659.3, 698.5, 784.0, 880.0, 987.8, 1046.5)
    for harmonics in (True, False):
        for decay in (0.0, 3.0, 8.0):
            notes = []
            for _ in range(16):
                f, sec = float(rng.choice(scale)), float(rng.choice([0.2, 0.3, 0.4, 0.6]))
                t = np.arange(round(sec * RATE)) / RATE
                ks = (1, 2, 3, 4) if harmonics else (1,)
                notes.append(8000 * sum(np.sin(2 * np.pi * f * k * t) / k for k in ks) * np.exp(-decay * t))
            # it ends on a chord: a flat pure-sine last note followed by silence is physically a beep
            chord = _sine(scale[0], 0.6, 5000) + _sine(scale[2], 0.6, 5000)
            tune = np.concatenate([*notes, chord])
            out.append(("music", _line(tune, 15.0, 8000.0**2 / 2, rng), 0))
    return out


def _pr(n: int, tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Counts of beeps over `n` clips; precision/recall are None where they are undefined (no positives)."""
    return {
        "clips": n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
    }


def acoustic() -> dict[str, Any]:
    rng = np.random.default_rng(20261124)
    per_source: dict[str, list[int]] = {}  # clips, tp, fp, fn
    for c in labels():
        for degraded in (False, True):
            want = 1 if c["id"] in BEEP_AFTER else 0
            got = _beeps(load(c["id"], degraded=degraded))
            key = "corpus_voicemail" if want else f"corpus_{c['class']}"
            s = per_source.setdefault(key, [0, 0, 0, 0])
            s[0] += 1
            s[1] += min(got, want)
            s[2] += max(0, got - want)
            s[3] += max(0, want - got)
    for source, pcm, want in generated(rng):
        got = _beeps(pcm)
        s = per_source.setdefault(source, [0, 0, 0, 0])
        s[0] += 1
        s[1] += min(got, want)
        s[2] += max(0, got - want)
        s[3] += max(0, want - got)
    tot = [sum(v[i] for v in per_source.values()) for i in range(4)]
    cadence: dict[str, dict[str, Any]] = {}
    decisions: dict[str, dict[str, int]] = {}
    machine = {"voicemail", "assistant", "announcement"}
    for c in labels():
        for degraded in (False, True):
            pcm = load(c["id"], degraded=degraded)
            amd, ep = AcousticAmd(), Endpointer()
            tail = np.tile(pcm[:2000], 8)  # the line's own noise goes on after the clip
            for f in frames_of(np.concatenate([pcm, tail])):
                ep.feed(f)
                amd.feed(f, ep.frame_speech)
            key = f"{c['class']}{'/degraded' if degraded else ''}"
            verdict = amd.cadence.verdict or "none"
            k = cadence.setdefault(key, {"n": 0, "correct": 0, "verdicts": {}})
            k["n"] += 1
            k["verdicts"][verdict] = k["verdicts"].get(verdict, 0) + 1
            ok = verdict == "machine" if c["class"] in machine else verdict != "machine"
            k["correct"] += ok
            d = decisions.setdefault(key, {"n": 0, "voicemail": 0})
            d["n"] += 1
            d["voicemail"] += amd.decision is not None
    for v in cadence.values():
        v["accuracy"] = round(v["correct"] / v["n"], 3)
    return {
        "beep": {"all": _pr(*tot), "per_source": {k: _pr(*v) for k, v in sorted(per_source.items())}},
        "cadence": {
            "rule": "machine: > 3.5 s of greeting with pauses < 0.8 s; human: <= 1.5 s then a 0.8 s pause",
            "correct_means": "voicemail/assistant/announcement -> machine; everything else -> not machine",
            "per_class": dict(sorted(cadence.items())),
        },
        "acoustic_voicemail_decisions": dict(sorted(decisions.items())),
        "early_media": early_media(rng),
    }


def _segments(pcm: PCM, rng: np.random.Generator) -> list[str]:
    mon = EarlyMediaMonitor()
    lead = rng.normal(0.0, 30.0, RATE // 2)  # early media starts with the line's noise
    x = np.concatenate([lead, pcm.astype(np.float64), np.zeros(RATE)])
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return [seg.kind for f in frames_of(pcm) if (seg := mon.feed(f)) is not None]


def early_media(rng: np.random.Generator) -> dict[str, Any]:
    """Early-media segments per source: speech (transcribed, text rules) must be found in every corpus
    speech clip; ringback tone and music must never be speech."""
    per: dict[str, dict[str, Any]] = {}

    def add(key: str, kinds: list[str], ok: bool) -> None:
        k = per.setdefault(key, {"n": 0, "correct": 0, "segments": {}})
        k["n"] += 1
        k["correct"] += ok
        for kind in kinds:
            k["segments"][kind] = k["segments"].get(kind, 0) + 1

    for c in labels():
        for degraded in (False, True):
            kinds = _segments(load(c["id"], degraded=degraded), rng)
            speechy = c["class"] not in ("music",)
            ok = bool(kinds) and set(kinds) == {"speech"} if speechy else "speech" not in kinds
            add(f"corpus_{c['class']}", kinds, ok)
    for source, pcm, _ in generated(rng):
        if source in ("ringback_cn", "ringback_us", "music"):
            kinds = _segments(pcm, rng)
            add(source, kinds, "speech" not in kinds)
    for v in per.values():
        v["accuracy"] = round(v["correct"] / v["n"], 3)
    return {
        "correct_means": "speech clips: found, and every segment speech; ringback/music: no speech segment",
        "per_source": dict(sorted(per.items())),
    }


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
        "detector": "text rules (engine.call.amd) on the ASR transcript",
        "acoustic": acoustic(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
    }
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 1))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
