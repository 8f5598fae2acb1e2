"""Character error rate for ASR measurements (Chinese and English alike)."""

from __future__ import annotations

import re

_DROP = re.compile(r"[\s,.!?;:，。！？、；：…~'\"\-]+")


def norm(text: str) -> str:
    """Lowercase and drop punctuation and spaces."""
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
    """Edits / reference characters after `norm`."""
    r, h = norm(ref), norm(hyp)
    return edit_distance(r, h) / max(1, len(r))
