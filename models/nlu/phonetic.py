"""Sound-alike matching for the cannot-miss phrases (stop_calling / complaint) in ASR-garbled Chinese.

Whisper on 8 kHz noisy audio writes the right sounds with the wrong characters (别再打了 -> 别再达了,
骚扰 -> 搜饶 / 收饶, 删掉 -> 深掉, 工信部 -> 公信部). The rules' character patterns miss those; here
the reply is turned into toneless pinyin (a table made with pypinyin: data/pinyin.txt), folded the way
Mandarin ASR and southern accents blur sounds (zh/z, ch/c, sh/s, n/l, -ng/-n, ao/ou, an/en), and the
key phrases are matched as syllable patterns. The patterns are anchored on syllable boundaries and
always need the verb and its object or particle (别再打, 别打了, 不要再联系, 删掉我的号码 ...), so
ordinary replies that merely share a syllable (不要大的, 打九分) do not match.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+|[0-9]+")

_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"))
_FINALS = (("iang", "ian"), ("uang", "uan"), ("ang", "an"), ("eng", "en"), ("ing", "in"), ("ou", "ao"))


def fold(syllable: str) -> str:
    """One toneless pinyin syllable -> its sound-alike class (e.g. shou -> sao, shen -> san)."""
    s = syllable
    for a, b in _INITIALS:
        if s.startswith(a) and not (a == "n" and s in ("n", "ng")):
            s = b + s[len(a) :]
            break
    for a, b in _FINALS:
        if s.endswith(a):
            s = s[: -len(a)] + b
            break
    if s.endswith("en") and not s.endswith(("ien", "uen")):
        s = s[:-2] + "an"
    return s


TABLE = Path(__file__).parent / "data" / "pinyin.txt"


def _common_chars() -> list[str]:
    """GB2312 (simplified) and Big5 level-1 (traditional) characters: what ASR writes."""
    chars: dict[str, None] = {}
    for lead, trails, enc in (
        (range(0xB0, 0xF8), range(0xA1, 0xFF), "gb2312"),
        (range(0xA4, 0xC7), [*range(0x40, 0x7F), *range(0xA1, 0xFF)], "big5"),
    ):
        for hi in lead:
            for lo in trails:
                try:
                    ch = bytes((hi, lo)).decode(enc)
                except UnicodeDecodeError:
                    continue
                if "\u4e00" <= ch <= "\u9fff":
                    chars[ch] = None
    return list(chars)


def build_table(path: Path = TABLE) -> int:
    """Write data/pinyin.txt (one line per toneless syllable: 'da 打大达...') with pypinyin; returns the
    number of characters. Run `python -m models.nlu.phonetic` after upgrading pypinyin."""
    from pypinyin import Style, pinyin

    by_syl: dict[str, list[str]] = {}
    for ch in _common_chars():
        syl = pinyin(ch, style=Style.NORMAL, heteronym=False)[0][0]
        if syl.isascii() and syl.isalpha():
            by_syl.setdefault(syl, []).append(ch)
    lines = [f"{syl} {''.join(chs)}" for syl, chs in sorted(by_syl.items())]
    path.write_text(
        "# toneless pinyin -> characters (GB2312 + Big5 level 1), from pypinyin; models.nlu.phonetic\n"
        + "\n".join(lines)
        + "\n",
        encoding="utf-8",
    )
    return sum(len(c) for c in by_syl.values())


@lru_cache(maxsize=1)
def char_syllables() -> dict[str, str]:
    """char -> toneless pinyin (its most common reading), from the committed table (about 1 MB loaded;
    pypinyin itself costs ~55 MB, too much for the serving process)."""
    table: dict[str, str] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            syl, _, chars = line.partition(" ")
            for ch in chars:
                table.setdefault(ch, syl)
    return table


def syllables(text: str) -> str:
    """Space-separated folded syllables of the Chinese characters ('?' if unknown) and digit runs."""
    table = char_syllables()
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        if run.isdigit():
            out.append(run)
        else:
            out.extend(fold(table[c]) if c in table else "?" for c in run)
    return " ".join(out)


_SYLLABLE = re.compile(r"[a-z]+")


def _p(*alts: str) -> re.Pattern[str]:
    """Syllable patterns written in plain toneless pinyin; folded like the input, matched on whole
    syllables."""
    body = "|".join(f"(?:{_SYLLABLE.sub(lambda m: fold(m.group()), a)})" for a in alts)
    return re.compile(r"(?:^| )(?:" + body + r")(?= |$)")


# 别 不要 不许 不准, and 别/不 heard with a neighbouring initial (撇打了, 普要再打, 服要再打了)
_NEG = r"(?:bie|pie|bu yao|pu yao|fu yao|bu xu|pu xu|bu zhun)"
_AGAIN = r"(?:zai |hai )?"  # 再/在 还
_ZAI = r"(?:zai|cai)"  # 再 heard as 才/菜/财 (不要才打了)
_TO_ME = r"(?:gei wo |wang zhe |wang zhe li )?"  # 给我 往这(里)
# after 打 in 别再打: the end, a particle or what is being called (so 不要在大厅 does not match)
_END = r"(?= (?:le|la|a|ya|ne|ba|ma|dian hua|guo lai|lai|gei|wo|zhe|ge|yi|le)(?= |$)|$)"
STOP_CALLING = _p(
    rf"{_NEG} {_ZAI} {_TO_ME}da{_END}",  # 别再打 不要再打 别再给我打 (and 别在达, 不要在大, 不要才打了)
    rf"{_NEG} {_ZAI} ta (?:le|la)$",  # 别再它了 (打 heard as 它/塌 at the very end; not 不要他了)
    rf"{_NEG} {_TO_ME}da (?:le|dian hua|guo lai|lai le|lai|zhe ge)",  # 别打了 别打电话 别给我打过来
    rf"{_NEG} {_AGAIN}(?:lian xi|sao rao|da rao) wo",  # 别再联系我 不要骚扰我 别打扰我
    rf"{_NEG} {_AGAIN}(?:lai|da) dian hua",  # 别来电话 不要再打电话
    r"la hei",  # 拉黑
    # 删掉/去除 我的号码/电话/手机; with that object, 删 heard as 涨/然/参 is still 删
    r"(?:shan|zan|can|ran|qu) (?:diao|chu|tiao) wo de (?:hao ma|dian hua|hao|shou ji)",
    r"ba wo (?:de hao ma |de dian hua )?(?:shan|la hei|yi chu)",  # 把我删了 把我拉黑
    rf"yi hou (?:dou |jiu )?{_NEG} (?:zai )?(?:da|lian xi|lai)",  # 以后都别打/联系
    r"zai da (?:yi ci |yi xia )?(?:wo )?(?:jiu )?(?:bao jing|tou su|la hei)",  # 再打就报警/投诉/拉黑
)
COMPLAINT = _p(
    r"tou su",  # 投诉 (头诉, 偷诉)
    r"sao rao",  # 骚扰 (搜饶, 收饶, 扫扰)
    r"ju bao",  # 举报
    r"bao jing",  # 报警
    r"gong xin bu",  # 工信部 (公信部)
    r"12315",
    r"zha pian",  # 诈骗
    r"pian zi gong si|pian zi ba|ni men shi pian zi",  # 骗子 accusing (not 片子, an x-ray)
)


def sounds_like_stop_calling(text: str) -> bool:
    """True when the (normalised) reply sounds like a do-not-call request."""
    syl = syllables(text)
    return bool(syl) and bool(STOP_CALLING.search(syl))


def sounds_like_complaint(text: str) -> bool:
    syl = syllables(text)
    return bool(syl) and bool(COMPLAINT.search(syl))


if __name__ == "__main__":
    sys.stdout.write(f"{TABLE}: {build_table()} characters\n")
