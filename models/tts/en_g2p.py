"""A small English grapheme-to-phoneme for Kokoro without spaCy.

misaki's own `en.G2P` needs spaCy plus the `en_core_web_sm` pipeline, which is not on the registries
this project may use, so this reads misaki's shipped US lexicons (us_gold.json, then us_silver.json:
~180k words with Kokoro's stress-marked phonemes) directly. Heteronyms take their DEFAULT reading;
unknown words try simple suffix rules, then are spelled letter by letter. Text should be normalised first
(models.tts.normalize.normalize_en) so digits are already words.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from functools import cached_property

_VOICELESS = frozenset("ptkfθ")
#: Function words whose lexicon entry is the stressed/citation form.
_WEAK = {"the": "ðə", "a": "ɐ", "to": "tə", "of": "ʌv", "and": "ænd"}
_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*|[.,!?;:—…]")


class EnglishG2P:
    def __init__(self) -> None:
        self._lexicon: dict[str, str] | None = None

    @cached_property
    def lexicon(self) -> dict[str, str]:
        data = importlib.resources.files("misaki") / "data"
        merged: dict[str, str] = {}
        for name in ("us_silver.json", "us_gold.json"):  # gold overrides silver
            raw: dict[str, object] = json.loads((data / name).read_text(encoding="utf-8"))
            for word, entry in raw.items():
                if isinstance(entry, str):
                    merged[word] = entry
                elif isinstance(entry, dict):
                    default = entry.get("DEFAULT") or next(iter(entry.values()), None)
                    if isinstance(default, str):
                        merged[word] = default
        return merged

    def _lookup(self, word: str) -> str | None:
        lex = self.lexicon
        for cand in (word, word.lower(), word.capitalize()):
            if cand in lex:
                return lex[cand]
        return None

    def word(self, word: str) -> str:
        word = word.replace("’", "'")
        if word.lower() in _WEAK:
            return _WEAK[word.lower()]
        hit = self._lookup(word)
        if hit is not None:
            return hit
        low = word.lower()
        for suffix, ending in (("'s", "z"), ("s", "z"), ("ed", "d"), ("ing", "ɪŋ"), ("ly", "li")):
            if low.endswith(suffix) and len(low) > len(suffix) + 2:
                stem = self._lookup(low[: -len(suffix)])
                if stem is not None:
                    if ending == "z" and stem[-1:] in _VOICELESS:
                        ending = "s"
                    return stem + ending
        # spell it: every letter is in the lexicon as a capital (A -> ˈA)
        return " ".join(self.lexicon.get(c.upper(), "") for c in word if c.isalpha())

    def __call__(self, text: str) -> str:
        out: list[str] = []
        for tok in _TOKEN.findall(text):
            if tok[0].isalpha():
                out.append(self.word(tok))
            elif out:
                out[-1] += tok
        return " ".join(p for p in out if p)
