"""Text normalisation before synthesis: turn digits, symbols and Latin letters into sayable words.

Kokoro's Mandarin front end reads digit strings as quantities (13812345678 -> 一百三十八亿…) and Latin
letters come out as garbage, so prompts are normalised first:

    normalize_zh("¥50")            -> "五十元"
    normalize_zh("19:30")          -> "十九点三十分"
    normalize_zh("13812345678")    -> "幺三八幺二三四五六七八"
    normalize_zh("2026-11-23")     -> "二零二六年十一月二十三日"
    normalize_en("$5 at 7:05")     -> "five dollars at seven oh five"

Pure functions, no model; cheap enough to run on the loop.
"""

from __future__ import annotations

import re

# --- Chinese numbers -------------------------------------------------------------------------------

ZH_DIGITS = "零一二三四五六七八九"
_ZH_UNITS = ("", "十", "百", "千")
_ZH_GROUPS = ("", "万", "亿", "万亿")
#: Measure words after which a bare 2 is read 两 (两个, 两点, 两天 ...).
_LIANG_AFTER = set("个位元块点次只张件本台天年岁节条项份瓶箱套间家周月种名号千万亿") | {
    "小时",
    "分钟",
    "公里",
    "公斤",
}


def _group_zh(n: int) -> str:
    """0 < n < 10000 without the leading-一十 shortening."""
    out: list[str] = []
    zero = False
    for pos in (3, 2, 1, 0):
        d = (n // 10**pos) % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(ZH_DIGITS[d] + _ZH_UNITS[pos])
    return "".join(out)


def int_to_zh(n: int, *, liang: bool = False) -> str:
    """Read an integer in Chinese: 10 -> 十, 1005 -> 一千零五, 2000 -> 两千, 10050 -> 一万零五十.

    liang=True reads a bare 2 as 两 (before a measure word).
    """
    if n < 0:
        return "负" + int_to_zh(-n, liang=liang)
    if n == 0:
        return "零"
    if n == 2 and liang:
        return "两"
    groups: list[int] = []
    m = n
    while m:
        groups.append(m % 10000)
        m //= 10000
    if len(groups) > len(_ZH_GROUPS):
        return digits_to_zh(str(n), yao=False)
    parts: list[str] = []
    need_zero = False
    for idx in range(len(groups) - 1, -1, -1):
        g = groups[idx]
        if g == 0:
            need_zero = bool(parts)
            continue
        if parts and (need_zero or g < 1000):
            parts.append("零")
        parts.append(_group_zh(g) + _ZH_GROUPS[idx])
        need_zero = False
    text = "".join(parts)
    if text.startswith("一十"):
        text = text[1:]
    # a leading 2 before 千/万/亿 is read 两 (两千, 两万, 两亿); 二十/二百 stay
    if text.startswith("二") and len(text) > 1 and text[1] in "千万亿":
        text = "两" + text[1:]
    return text


def digits_to_zh(digits: str, *, yao: bool = True) -> str:
    """Read a digit string one digit at a time; yao=True reads 1 as 幺 (phone numbers, codes)."""
    table = ZH_DIGITS.replace("一", "幺") if yao else ZH_DIGITS
    return "".join(table[int(c)] if c.isdigit() else c for c in digits)


def number_to_zh(text: str, *, liang: bool = False) -> str:
    """'1,234.50' -> 一千二百三十四点五零; integer part via int_to_zh, decimals digit by digit."""
    text = text.replace(",", "")
    neg = text.startswith("-")
    text = text.lstrip("+-")
    whole, _, frac = text.partition(".")
    out = int_to_zh(int(whole or "0"), liang=liang and not frac)
    if frac:
        out += "点" + digits_to_zh(frac, yao=False)
    return ("负" if neg else "") + out


# --- Latin letters in Chinese text -----------------------------------------------------------------

_ZH_LETTERS = {
    "A": "诶", "B": "比", "C": "西", "D": "迪", "E": "伊", "F": "艾弗", "G": "吉", "H": "艾尺", "I": "艾",
    "J": "杰", "K": "开", "L": "艾勒", "M": "艾姆", "N": "恩", "O": "欧", "P": "批", "Q": "丘", "R": "阿",
    "S": "艾斯", "T": "踢", "U": "优", "V": "维", "W": "达不溜", "X": "艾克斯", "Y": "歪", "Z": "贼",
}  # fmt: skip
_ZH_WORDS = {
    "OK": "欧开", "OKAY": "欧开", "WIFI": "歪法", "KM": "公里", "KG": "公斤", "CM": "厘米", "MM": "毫米",
    "MB": "兆", "GB": "G B", "HELLO": "哈喽", "HI": "嗨", "BYE": "拜拜", "PK": "批开", "DIY": "迪爱歪",
    "VS": "对",
}  # fmt: skip


def latin_to_zh(word: str) -> str:
    """OK -> 欧开, APP -> 诶批批, VIP -> 维艾批: known words mapped, others spelled letter by letter."""
    key = word.upper().replace("-", "")
    mapped = _ZH_WORDS.get(key)
    if mapped is not None:
        return "".join(_ZH_LETTERS.get(c, c) for c in mapped.split()) if " " in mapped else mapped
    return "".join(_ZH_LETTERS.get(c, "") for c in key)


# --- Chinese normaliser ----------------------------------------------------------------------------

_FULLWIDTH = {i: i - 0xFEE0 for i in range(0xFF10, 0xFF1A)} | {
    i: i - 0xFEE0 for i in [*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]
}
_FULLWIDTH |= {0xFF05: ord("%"), 0xFFE5: ord("¥"), 0xFF0B: ord("+"), 0xFF0E: ord(".")}

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*([日号])?(?!\d)")
_TIME = re.compile(r"(?<![\d.])(\d{1,2})\s*[:：]\s*(\d{2})(?:\s*[:：]\s*(\d{2}))?(?![\d.])")
_MOBILE = re.compile(r"(?<![\d.])(?:\+?86[-\s]?)?(1[3-9]\d)([-\s]?)(\d{4})([-\s]?)(\d{4})(?![\d.])")
_LANDLINE = re.compile(r"(?<![\d.])(?:\(?(0\d{2,3})\)?([-\s]))(\d{7,8})(?:-(\d{1,5}))?(?![\d.])")
_SERVICE = re.compile(r"(?<![\d.])([48]00)([-\s]?)(\d{3})([-\s]?)(\d{4})(?![\d.])")
_MONEY_PREFIX = re.compile(rf"([¥$€£])\s*({_NUM})\s*(万|亿)?(元|块)?")
_PERCENT = re.compile(rf"({_NUM})\s*([%‰])")
_RANGE = re.compile(rf"({_NUM})\s*[~～\-—–]\s*(?=({_NUM}))")
_YEAR = re.compile(r"(?<!\d)(\d{4})(?=\s*年)")
_LONG_DIGITS = re.compile(r"(?<![\d.,])(0\d+|\d{7,})(?![\d.,]*\s*[元块万亿])(?![\d.,])")
_NUMBER = re.compile(rf"(第)?(-?{_NUM})")
_LATIN = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
_ZH_SYMBOLS = {"+": "加", "=": "等于", "&": "和", "@": "艾特", "#": "井号", "*": "星号", "℃": "度", "°": "度"}
_CURRENCY_ZH = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}


def _time_zh(m: re.Match[str]) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59 or (second is not None and int(second) > 59):
        return m.group(0)
    out = int_to_zh(hour, liang=True) + "点"
    if minute:
        out += ("零" if minute < 10 else "") + int_to_zh(minute) + "分"
    if second is not None and int(second):
        out += ("零" if int(second) < 10 else "") + int_to_zh(int(second)) + "秒"
    return out


def _date_zh(m: re.Match[str]) -> str:
    year, month, day = m.group(1), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{digits_to_zh(year, yao=False)}年{int_to_zh(month)}月{int_to_zh(day)}{m.group(4) or '日'}"


def _phone_zh(groups: list[str | None], seps: list[str | None]) -> str:
    out = []
    for i, g in enumerate(groups):
        if not g:
            continue
        out.append(digits_to_zh(g))
        if i < len(seps) and seps[i]:
            out.append("，")
    return "".join(out).rstrip("，")


def _number_zh(m: re.Match[str]) -> str:
    ordinal, num = m.group(1), m.group(2)
    if ordinal:
        return "第" + number_to_zh(num)
    rest = m.string[m.end() : m.end() + 2]
    liang = rest[:1] in _LIANG_AFTER or rest in _LIANG_AFTER
    return number_to_zh(num, liang=liang)


def normalize_zh(text: str) -> str:
    """Normalise Mandarin prompt text for TTS (see the module doc for examples)."""
    text = text.translate(_FULLWIDTH)
    text = _DATE.sub(_date_zh, text)
    text = _MOBILE.sub(lambda m: _phone_zh([m[1], m[3], m[5]], [m[2], m[4]]), text)
    text = _SERVICE.sub(lambda m: _phone_zh([m[1], m[3], m[5]], [m[2], m[4]]), text)
    text = _LANDLINE.sub(
        lambda m: _phone_zh([m[1], m[3]], [m[2]]) + ("转" + digits_to_zh(m[4]) if m[4] else ""), text
    )
    text = _TIME.sub(_time_zh, text)
    text = _MONEY_PREFIX.sub(
        lambda m: number_to_zh(m[2], liang=not m[3]) + (m[3] or "") + _CURRENCY_ZH[m[1]], text
    )
    text = _PERCENT.sub(lambda m: ("百分之" if m[2] == "%" else "千分之") + number_to_zh(m[1]), text)
    text = _RANGE.sub(lambda m: m[1] + "到", text)
    text = _YEAR.sub(lambda m: digits_to_zh(m[1], yao=False), text)
    text = _LONG_DIGITS.sub(lambda m: digits_to_zh(m[1]), text)
    text = _NUMBER.sub(_number_zh, text)
    text = _LATIN.sub(lambda m: latin_to_zh(m.group(0)), text)
    for sym, word in _ZH_SYMBOLS.items():
        text = text.replace(sym, word)
    return text


# --- English ---------------------------------------------------------------------------------------

_EN_ONES = [
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
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_EN_ORD = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip
_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def int_to_en(n: int) -> str:
    """123 -> 'one hundred twenty three' (no 'and', no hyphens: the lexicon knows the plain words)."""
    if n < 0:
        return "minus " + int_to_en(-n)
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("" if n % 10 == 0 else " " + _EN_ONES[n % 10])
    for value, word in _EN_SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{int_to_en(head)} {word}" + ("" if rest == 0 else " " + int_to_en(rest))
    raise AssertionError("unreachable")


def ordinal_en(n: int) -> str:
    words = int_to_en(n).split()
    last = words[-1]
    if last in _EN_ORD:
        words[-1] = _EN_ORD[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def number_to_en(text: str) -> str:
    text = text.replace(",", "")
    whole, _, frac = text.partition(".")
    out = int_to_en(int(whole or "0"))
    if frac:
        out += " point " + " ".join(_EN_ONES[int(c)] for c in frac)
    return out


def _year_en(y: int) -> str:
    if 2000 <= y < 2010:
        return int_to_en(y)
    head, tail = divmod(y, 100)
    return (
        int_to_en(head) + " " + ("hundred" if tail == 0 else ("oh " if tail < 10 else "") + int_to_en(tail))
    )


def digits_to_en(digits: str) -> str:
    return " ".join(_EN_ONES[int(c)] for c in digits if c.isdigit())


_EN_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_EN_TIME = re.compile(r"(?<![\d.])(\d{1,2}):(\d{2})(?:\s*([ap])\.?m\.?)?(?![\d.])", re.IGNORECASE)
_EN_PHONE = re.compile(r"(?<![\d.])\+?\d[\d\s()-]{5,}\d(?![\d.])")
_EN_MONEY = re.compile(r"([$€£¥])\s*(\d+(?:,\d{3})*)(?:\.(\d{2}))?")
_EN_PERCENT = re.compile(rf"({_NUM})\s*%")
_EN_ORDINAL = re.compile(r"(?<!\d)(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_EN_NUMBER = re.compile(_NUM)
_EN_WORDS = {"OK": "okay", "Mr.": "mister", "Mrs.": "missus", "Dr.": "doctor", "&": " and ", "St.": "street"}
_EN_CURRENCY = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "pence"), "¥": ("yuan", "fen")}
_ACRONYM = re.compile(r"\b[A-Z]{2,5}\b")


def _money_en(m: re.Match[str]) -> str:
    unit, sub = _EN_CURRENCY[m[1]]
    whole = int(m[2].replace(",", ""))
    out = f"{int_to_en(whole)} {unit}{'' if whole == 1 else 's'}"
    if m[3] and int(m[3]):
        cents = int(m[3])
        out += f" and {int_to_en(cents)} {sub}{'' if cents == 1 or sub == 'pence' else 's'}"
    return out


def _time_en(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m[1]), int(m[2]), m[3]
    if hour > 24 or minute > 59:
        return m.group(0)
    out = int_to_en(hour)
    if minute == 0:
        out += " o'clock" if not ampm else ""
    else:
        out += " " + ("oh " if minute < 10 else "") + int_to_en(minute)
    if ampm:
        out += f" {ampm.lower()} m"
    return out


def _phone_en(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if len(digits) < 7:
        return m.group(0)
    return digits_to_en(digits)


def normalize_en(text: str) -> str:
    """Minimal English normalisation: money, percent, times, dates, phone numbers, ordinals, numbers."""
    text = text.translate(_FULLWIDTH)
    for word, repl in _EN_WORDS.items():
        text = re.sub(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", repl, text)
    text = _EN_DATE.sub(
        lambda m: (
            f"{_EN_MONTHS[int(m[2]) - 1]} {ordinal_en(int(m[3]))}, {_year_en(int(m[1]))}"
            if 1 <= int(m[2]) <= 12 and 1 <= int(m[3]) <= 31
            else m.group(0)
        ),
        text,
    )
    text = _EN_TIME.sub(_time_en, text)
    text = _EN_PHONE.sub(_phone_en, text)
    text = _EN_MONEY.sub(_money_en, text)
    text = _EN_PERCENT.sub(lambda m: number_to_en(m[1]) + " percent", text)
    text = _EN_ORDINAL.sub(lambda m: ordinal_en(int(m[1])), text)
    text = _EN_NUMBER.sub(lambda m: number_to_en(m.group(0)), text)
    text = _ACRONYM.sub(lambda m: " ".join(m.group(0)), text)
    return re.sub(r"\s{2,}", " ", text).strip()


def normalize(text: str, language: str = "zh") -> str:
    """Normalise for the voice's language ('zh' or 'en')."""
    return normalize_en(text) if language.startswith("en") else normalize_zh(text)
