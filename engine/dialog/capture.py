"""Values captured from a reply: numbers (0-10 scores by voice or keypad)."""

from __future__ import annotations

import re

from engine.dialog.timeparse import cn_number

_EN = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
_ZH = "[零〇一二两三四五六七八九十]{1,3}"
_ZH_SCORE = re.compile(rf"({_ZH})\s*(?:分|颗星)")
_ZH_ALONE = re.compile(rf"^(?:打|给|就|嗯)?\s*({_ZH})\s*(?:吧|啊|呀|吧啊)?[。.!！]?$")


def parse_number(text: str) -> int | None:
    """The first number in the words: '打9分吧' -> 9, '十分' -> 10, 'I'd say eight' -> 8, '满分' -> None."""
    t = text.strip().lower()
    m = re.search(r"\d{1,3}", t)
    if m:
        return int(m.group(0))
    for w in re.findall(r"[a-z]+", t):
        if w in _EN:
            return _EN[w]
    # Chinese numerals only as a score (九分) or the whole reply (九): 一般 / 一下 are not numbers
    m2 = _ZH_SCORE.search(t) or _ZH_ALONE.match(t)
    return cn_number(m2.group(1)) if m2 else None
