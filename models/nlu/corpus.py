"""The NLU base corpus (models/nlu/data/corpus_{zh,en}.txt) and its fixed held-out split.

corpus_*.txt: "## intent emotion" headers, then one reply per line ("text" or "text|emotion").
heldout.jsonl: the held-out split (about 20% of every intent in every language, chosen by a stable hash of
the text). It is committed and training never sees it; `python -m models.nlu.corpus --resplit` rewrites it
(only when the corpus changed on purpose). asr_eval.jsonl: the held-out texts passed through TTS ->
8 kHz µ-law + noise -> ASR (models/nlu/asr_eval.py builds it). asr_train.jsonl: the same channel on a
stratified sample of the *training* texts, with other voices (models/nlu/asr_train.py), for training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import ModelError
from engine.intents import BASE_INTENTS, Emotion

DATA_DIR = Path(__file__).parent / "data"
LANGUAGES = ("zh", "en")
EMOTIONS: tuple[str, ...] = tuple(e.value for e in Emotion)
HELDOUT_FRACTION = 0.2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    emotion: str
    lang: str


def corpus_path(lang: str, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"corpus_{lang}.txt"


def parse_corpus(text: str, lang: str, source: str = "<corpus>") -> list[Example]:
    """Parse one corpus file; a malformed line raises ModelError naming file:line."""
    out: list[Example] = []
    intent: str | None = None
    default_emotion = "neutral"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or (line.startswith("#") and not line.startswith("##")):
            continue
        if line.startswith("##"):
            parts = line[2:].split()
            if len(parts) != 2 or parts[0] not in BASE_INTENTS or parts[1] not in EMOTIONS:
                raise ModelError(
                    f"{source}:{lineno}: header {line!r} must be '## <intent> <emotion>'",
                    hint=f"intents: {', '.join(BASE_INTENTS)}; emotions: {', '.join(EMOTIONS)}",
                )
            intent, default_emotion = parts
            continue
        if intent is None:
            raise ModelError(f"{source}:{lineno}: example before any '## intent emotion' header")
        txt, sep, emo = line.rpartition("|")
        if not sep:
            txt, emo = line, default_emotion
        if emo not in EMOTIONS:
            raise ModelError(f"{source}:{lineno}: unknown emotion {emo!r}", hint=", ".join(EMOTIONS))
        out.append(Example(text=txt.strip(), intent=intent, emotion=emo, lang=lang))
    return out


def load_corpus(data_dir: Path = DATA_DIR, languages: Sequence[str] = LANGUAGES) -> list[Example]:
    examples: list[Example] = []
    for lang in languages:
        path = corpus_path(lang, data_dir)
        examples.extend(parse_corpus(path.read_text(encoding="utf-8"), lang, str(path)))
    return examples


def data_hash(data_dir: Path = DATA_DIR) -> str:
    """sha256 over the corpus files and the held-out split (recorded in the model card)."""
    h = hashlib.sha256()
    for name in [*(f"corpus_{lang}.txt" for lang in LANGUAGES), "heldout.jsonl", "asr_train.jsonl"]:
        p = data_dir / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _rank(text: str) -> str:
    return hashlib.sha1(("outcall-nlu-split:" + text).encode()).hexdigest()


def choose_heldout(examples: Iterable[Example], fraction: float = HELDOUT_FRACTION) -> list[Example]:
    """About `fraction` of every (language, intent) group, chosen by a stable hash of the text."""
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for ex in examples:
        groups[(ex.lang, ex.intent)].append(ex)
    out: list[Example] = []
    for key in sorted(groups):
        items = sorted(groups[key], key=lambda e: _rank(e.text))
        out.extend(items[: max(1, round(len(items) * fraction))])
    return out


def write_jsonl(path: Path, rows: Iterable[dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def load_heldout(data_dir: Path = DATA_DIR) -> list[Example]:
    path = data_dir / "heldout.jsonl"
    if not path.is_file():
        raise ModelError(f"{path} is missing", hint="python -m models.nlu.corpus --resplit")
    return [
        Example(text=str(r["text"]), intent=str(r["intent"]), emotion=str(r["emotion"]), lang=str(r["lang"]))
        for r in read_jsonl(path)
    ]


def load_splits(data_dir: Path = DATA_DIR) -> tuple[list[Example], list[Example]]:
    """(train, heldout): train is the corpus minus every held-out text."""
    heldout = load_heldout(data_dir)
    held_texts = {(e.lang, e.text) for e in heldout}
    train = [e for e in load_corpus(data_dir) if (e.lang, e.text) not in held_texts]
    return train, heldout


def load_asr_eval(data_dir: Path = DATA_DIR) -> list[Example]:
    """The through-ASR set: text is what Whisper heard; intent/emotion are the held-out labels."""
    path = data_dir / "asr_eval.jsonl"
    if not path.is_file():
        return []
    return [
        Example(text=str(r["asr"]), intent=str(r["intent"]), emotion=str(r["emotion"]), lang=str(r["lang"]))
        for r in read_jsonl(path)
    ]


def hard_stop_calling(data_dir: Path = DATA_DIR) -> list[str]:
    """Do-not-call phrasings that must always be classified stop_calling (data/stop_calling_hard.txt)."""
    lines = (data_dir / "stop_calling_hard.txt").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.nlu.corpus", description="NLU corpus statistics")
    ap.add_argument("--resplit", action="store_true", help="rewrite data/heldout.jsonl from the corpus")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = load_corpus()
    dupes = [k for k, n in Counter((e.lang, e.text) for e in corpus).items() if n > 1]
    if dupes:
        log.error("duplicate examples: %s", dupes)
        return 1
    if args.resplit:
        write_jsonl(DATA_DIR / "heldout.jsonl", (asdict(e) for e in choose_heldout(corpus)))
    counts = Counter((e.lang, e.intent) for e in corpus)
    for intent in BASE_INTENTS:
        log.info("%-16s zh %3d  en %3d", intent, counts[("zh", intent)], counts[("en", intent)])
    log.info("total %d, data hash %s", len(corpus), data_hash()[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
