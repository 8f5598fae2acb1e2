"""ASR-style noise for training: what Whisper does to a reply heard over an 8 kHz phone line.

Chinese: characters swapped for homophones or near-homophones (same toneless pinyin, or the same after
folding zh/z, ch/c, sh/s, n/l, -ng/-n as in models.nlu.phonetic and its pinyin table; candidates are
the 3,755 common GB2312 level-1 characters), now and then a looser confusion heard on 8 kHz lines
(aspirated / unaspirated and other initials of one place: 不 -> 普 / 服, 是 -> 许), a character dropped or
doubled, a filler or a stutter inside the reply, traditional characters where Whisper slips into them,
sentence punctuation and stray spaces. English: dropped or doubled
short words, homophones (to/two, no/know ...), contractions expanded or mangled, punctuation, capitals.

Training (models.nlu.train) applies it to a share of the examples each epoch; the held-out and
through-ASR evaluation sets are never touched.
"""

from __future__ import annotations

import random
from collections import defaultdict
from functools import lru_cache

from models.nlu.phonetic import char_syllables, fold

# simplified -> traditional for characters common in replies (Whisper answers in traditional at times)
_S2T = dict(
    zip(
        "别骚扰价钱转问谁里说没听对诉开会兴经报虑错话给电这个们么为时间员实烦滚费点几买办过吗谢请样还儿应该让联系来与后须节课试号码类发边现觉得还学车东线头见长门",
        "別騷擾價錢轉問誰裡說沒聽對訴開會興經報慮錯話給電這個們麼為時間員實煩滾費點幾買辦過嗎謝請樣還兒應該讓聯係來與後須節課試號碼類發邊現覺得還學車東線頭見長門",
        strict=True,
    )
)
_EN_HOMOPHONES = {
    "to": ("two", "too"),
    "too": ("to",),
    "for": ("four",),
    "no": ("know",),
    "know": ("no",),
    "right": ("write",),
    "there": ("their",),
    "hear": ("here",),
    "here": ("hear",),
    "by": ("buy", "bye"),
    "buy": ("by",),
    "one": ("won",),
    "our": ("hour",),
    "weak": ("week",),
    "week": ("weak",),
    "call": ("cold", "cool"),
    "me": ("we",),
    "i'm": ("im", "i am"),
    "don't": ("dont", "do not", "don"),
    "can't": ("cant", "can"),
    "it's": ("its",),
}


def _level1(ch: str) -> bool:
    try:
        return ch.encode("gb2312")[0] < 0xD8
    except UnicodeEncodeError:
        return False


@lru_cache(maxsize=1)
def _homophones() -> tuple[dict[str, str], dict[str, list[str]], dict[str, list[str]]]:
    """(char -> syllable, syllable -> chars, folded syllable -> chars) over GB2312 level 1."""
    syl_of: dict[str, str] = {}
    by_syl: dict[str, list[str]] = defaultdict(list)
    by_fold: dict[str, list[str]] = defaultdict(list)
    for ch, s in char_syllables().items():
        if not _level1(ch):
            continue
        syl_of[ch] = s
        by_syl[s].append(ch)
        by_fold[fold(s)].append(ch)
    return syl_of, dict(by_syl), dict(by_fold)


# initials that a narrow-band line and a noisy ASR blur together (training noise only: the matching of
# the do-not-call phrases in models.nlu.phonetic stays on the stricter fold())
_LOOSE_INITIALS = (
    ("b", "p", "f", "m"),
    ("d", "t"),
    ("g", "k", "h"),
    ("j", "q", "x"),
    ("z", "c", "s", "zh", "ch", "sh", "r"),
    ("n", "l"),
)
_FILLERS_IN = ("嗯", "那个", "就是", "呃", "啊")


def _initial(s: str) -> str:
    for ini in (
        "zh",
        "ch",
        "sh",
        "b",
        "p",
        "m",
        "f",
        "d",
        "t",
        "n",
        "l",
        "g",
        "k",
        "h",
        "j",
        "q",
        "x",
        "r",
        "z",
        "c",
        "s",
        "y",
        "w",
    ):
        if s.startswith(ini):
            return ini
    return ""


@lru_cache(maxsize=1)
def _loose() -> dict[str, list[str]]:
    """loose class ('b/p/f/m|u') -> chars, over GB2312 level 1."""
    syl_of, _by_syl, _by_fold = _homophones()
    out: dict[str, list[str]] = defaultdict(list)
    for ch, s in syl_of.items():
        out[_loose_key(s)].append(ch)
    return dict(out)


def _loose_key(s: str) -> str:
    ini = _initial(s)
    group = next((g for g in _LOOSE_INITIALS if ini in g), (ini,))
    return "/".join(group) + "|" + fold(s[len(ini) :] or s)


def _sound_alike(ch: str, rng: random.Random) -> str:
    syl_of, by_syl, by_fold = _homophones()
    s = syl_of.get(ch)
    if s is None:
        return ch
    r = rng.random()
    pool = by_syl[s] if r < 0.6 else by_fold[fold(s)] if r < 0.85 else _loose().get(_loose_key(s), [ch])
    others = [c for c in pool if c != ch]
    return rng.choice(others) if others else ch


def asr_noise_zh(text: str, rng: random.Random, rate: float = 0.15) -> str:
    """Garble a Chinese reply the way ASR does (about `rate` of the characters swapped)."""
    chars = list(text)
    cjk = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff"]
    if not cjk:
        return text
    n_swap = sum(1 for _ in cjk if rng.random() < rate) or (1 if rng.random() < 0.6 else 0)
    for i in rng.sample(cjk, min(n_swap, len(cjk))):
        chars[i] = _sound_alike(chars[i], rng)
    r = rng.random()
    if r < 0.12 and len(chars) > 3:
        del chars[rng.randrange(len(chars))]
    elif r < 0.2:
        i = rng.randrange(len(chars))
        chars.insert(i, chars[i])
    elif r < 0.28 and len(chars) > 2:  # a filler inside the reply (我那个不需要)
        chars.insert(rng.randrange(1, len(chars)), rng.choice(_FILLERS_IN))
    elif r < 0.31:  # a stutter / a short Whisper loop at the end
        chars.extend(chars[-1:] * rng.randint(2, 4))
    if rng.random() < 0.15:
        chars = [_S2T.get(c, c) if rng.random() < 0.7 else c for c in chars]
    out = "".join(chars)
    r = rng.random()
    if r < 0.35:
        out += rng.choice(("。", "？", "!", "。", "，"))
    elif r < 0.45 and len(out) > 4:
        k = rng.randrange(2, len(out) - 1)
        out = out[:k] + rng.choice(("，", " ", "。")) + out[k:]
    return out


def asr_noise_en(text: str, rng: random.Random) -> str:
    """Garble an English reply the way ASR does: homophones, a dropped or doubled word, punctuation."""
    words = text.split()
    if not words:
        return text
    out: list[str] = []
    for w in words:
        alts = _EN_HOMOPHONES.get(w.lower())
        if alts and rng.random() < 0.3:
            out.append(rng.choice(alts))
        elif len(w) <= 3 and len(words) > 3 and rng.random() < 0.08:
            continue  # a short word lost
        else:
            out.append(w)
    if len(out) > 1 and rng.random() < 0.08:
        i = rng.randrange(len(out))
        out.insert(i, out[i])
    s = " ".join(out)
    if rng.random() < 0.5:
        s = s[:1].upper() + s[1:]
    if rng.random() < 0.5:
        s += rng.choice((".", "?", ".", "!"))
    return s


def asr_noise(text: str, lang: str, rng: random.Random) -> str:
    return asr_noise_zh(text, rng) if lang == "zh" else asr_noise_en(text, rng)
