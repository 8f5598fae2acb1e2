"""Callback times from what the callee says: 晚上七点, 明天上午, 下午三点半, 半小时后, 周五下午,
"tomorrow morning", "at 7 pm", "in an hour". Pure: the caller passes `now` (in the callee's time zone).

`parse_when` returns None when the words name no time; `clamp_to_window` moves a time into the campaign's
calling window (before the window: its start that day; after it: its start the next day).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

DEFAULT_WINDOW: tuple[time, time] = (time(9, 0), time(20, 0))

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_NUM = r"(?:\d{1,2}|[零〇一二两三四五六七八九十]{1,3})"


def cn_number(s: str) -> int | None:
    """'七' -> 7, '十二' -> 12, '二十' -> 20, '12' -> 12; None if not a number."""
    s = s.strip()
    if not s:
        return None
    if s.isdigit():
        return int(s)
    if "十" in s:
        head, _, tail = s.partition("十")
        tens = _CN_DIGITS.get(head, -1) if head else 1
        ones = _CN_DIGITS.get(tail, -1) if tail else 0
        if tens < 0 or ones < 0:
            return None
        return tens * 10 + ones
    if len(s) == 1 and s in _CN_DIGITS:
        return _CN_DIGITS[s]
    if all(c in _CN_DIGITS for c in s):  # 一零 -> 10 (digit by digit)
        return int("".join(str(_CN_DIGITS[c]) for c in s))
    return None


_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
_ZH_PERIOD = {
    "早上": (8, 30),
    "早晨": (8, 30),
    "上午": (10, 0),
    "中午": (12, 0),
    "下午": (15, 0),
    "傍晚": (18, 0),
    "晚上": (19, 0),
    "今晚": (19, 0),
    "明晚": (19, 0),
    "明早": (9, 0),
    "夜里": (20, 0),
}
_PM_PERIODS = {"下午", "傍晚", "晚上", "今晚", "明晚", "夜里"}

_EN_WEEKDAY = {
    d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_EN_PERIOD = {
    "morning": (10, 0),
    "noon": (12, 0),
    "lunchtime": (12, 0),
    "afternoon": (15, 0),
    "evening": (19, 0),
    "tonight": (19, 0),
}


def parse_when(text: str, now: datetime) -> datetime | None:
    """The time the callee asks to be called back at, or None when the words name no time."""
    t = text.strip().lower()
    if re.search(r"[\u4e00-\u9fff]", t):
        return _parse_zh(t.replace(" ", ""), now)
    return _parse_en(t, now)


def _at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour % 24, minute=minute, second=0, microsecond=0)


def _parse_zh(t: str, now: datetime) -> datetime | None:
    rel = re.search(rf"({_NUM}|半)个?(小时|钟头|分钟)(?:以?后|之后|左右)", t)
    if rel:
        n = 0.5 if rel.group(1) == "半" else float(cn_number(rel.group(1)) or 0)
        minutes = n * 60 if rel.group(2) in ("小时", "钟头") else n
        if minutes > 0:
            return (now + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    day: datetime | None = None
    explicit_day = True
    if "大后天" in t:
        day = now + timedelta(days=3)
    elif "后天" in t:
        day = now + timedelta(days=2)
    elif "明天" in t or "明早" in t or "明晚" in t or "明儿" in t:
        day = now + timedelta(days=1)
    elif "今天" in t or "今晚" in t:
        day = now
    elif re.search(r"下个?月", t):
        day = now + timedelta(days=30)
    elif m := re.search(r"过(两|几|[一二三四五六七]|\d)天", t):
        day = now + timedelta(days=3 if m.group(1) == "几" else cn_number(m.group(1)) or 2)
    elif re.search(r"下+(?:周|星期|礼拜)(?![一二三四五六日天末])", t):
        day = now + timedelta(days=7 - now.weekday())
    else:
        wk = re.search(r"(下+)?(?:周|星期|礼拜)([一二三四五六日天末])", t)
        if wk:
            target = _ZH_WEEKDAY[wk.group(2)]
            ahead = (target - now.weekday()) % 7
            if wk.group(1):
                ahead += 7 * len(wk.group(1)) if ahead else 7
            elif ahead == 0:
                ahead = 7
            day = now + timedelta(days=ahead)
    if day is None:
        day, explicit_day = now, False
    period = next((p for p in _ZH_PERIOD if p in t), None)
    hour_m = re.search(rf"({_NUM})[点點时](?:钟)?(半|一刻|三刻|({_NUM})分?)?", t)
    if hour_m:
        hour = cn_number(hour_m.group(1))
        if hour is None or hour > 24:
            return None
        minute = 0
        if hour_m.group(2) == "半":
            minute = 30
        elif hour_m.group(2) == "一刻":
            minute = 15
        elif hour_m.group(2) == "三刻":
            minute = 45
        elif hour_m.group(3):
            minute = min(59, cn_number(hour_m.group(3)) or 0)
        if (period in _PM_PERIODS and hour < 12) or (period == "中午" and hour <= 2):
            hour += 12
        elif period is None and 1 <= hour <= 7:
            hour += 12  # 三点 on a business call means the afternoon
        when = _at(day, hour, minute)
    elif period is not None:
        when = _at(day, *_ZH_PERIOD[period])
    elif explicit_day:
        when = _at(day, 10, 0)
    elif re.search(r"晚点|晚些|待会|等会|一会儿?|稍后|回头|过会", t):
        return (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    else:
        return None
    if not explicit_day and when <= now:
        when += timedelta(days=1)
    return when


def _parse_en(t: str, now: datetime) -> datetime | None:
    rel = re.search(r"\bin (an?|half an|\d+|one|two|three|a couple of) (hours?|minutes?|mins?)\b", t)
    if rel:
        words = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "a couple of": 2, "half an": 0.5}
        n = words.get(rel.group(1)) or float(rel.group(1))
        minutes = n * 60 if rel.group(2).startswith("hour") else n
        return (now + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    day: datetime | None = None
    explicit_day = True
    if "day after tomorrow" in t:
        day = now + timedelta(days=2)
    elif "tomorrow" in t:
        day = now + timedelta(days=1)
    elif re.search(r"\btoday\b|\btonight\b|\bthis (?:morning|afternoon|evening)\b", t):
        day = now
    else:
        wk = re.search(r"\b(next )?(" + "|".join(_EN_WEEKDAY) + r")\b", t)
        if wk:
            ahead = (_EN_WEEKDAY[wk.group(2)] - now.weekday()) % 7 or 7
            if wk.group(1) and ahead < 7:
                ahead += 7
            day = now + timedelta(days=ahead)
    if day is None:
        day, explicit_day = now, False
    period = next((p for p in _EN_PERIOD if p in t), None)
    hm = re.search(r"\b(?:at |around |after )?(\d{1,2})(?::(\d\d))?\s*(a\.?m\.?|p\.?m\.?|o'?clock)?\b", t)
    if hm and (hm.group(3) or hm.group(2) or re.search(r"\b(?:at|around|after) \d", t)):
        hour, minute = int(hm.group(1)), int(hm.group(2) or 0)
        if hour > 24 or minute > 59:
            return None
        suffix = (hm.group(3) or "").replace(".", "")
        if (suffix == "pm" or period in ("afternoon", "evening", "tonight")) and hour < 12:
            hour += 12
        elif suffix == "am" and hour == 12:
            hour = 0
        elif not suffix and period is None and 1 <= hour <= 7:
            hour += 12
        when = _at(day, hour, minute)
    elif period is not None:
        when = _at(day, *_EN_PERIOD[period])
    elif explicit_day:
        when = _at(day, 10, 0)
    elif re.search(r"\blater\b|\bin a (?:bit|while)\b", t):
        return (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    else:
        return None
    if not explicit_day and when <= now:
        when += timedelta(days=1)
    return when


def clamp_to_window(when: datetime, window: tuple[time, time] = DEFAULT_WINDOW) -> datetime:
    """Move `when` into the calling window: before it -> the window's start that day; after it -> the
    window's start the next day."""
    start, end = window
    t = when.timetz().replace(tzinfo=None)
    if t < start:
        return when.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if t > end:
        nxt = when + timedelta(days=1)
        return nxt.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return when


def describe(when: datetime, now: datetime, language: str = "zh-CN") -> str:
    """Words for a prompt: 今天晚上7点 / 明天上午9点半 / tomorrow at 9:30 AM."""
    days = (when.date() - now.date()).days
    if language.startswith("zh"):
        day = {0: "今天", 1: "明天", 2: "后天"}.get(days, f"{when.month}月{when.day}日")
        h = when.hour
        period = "上午" if h < 12 else "中午" if h < 13 else "下午" if h < 18 else "晚上"
        h12 = h if h <= 12 else h - 12
        minute = "" if when.minute == 0 else "半" if when.minute == 30 else f"{when.minute}分"
        return f"{day}{period}{h12}点{minute}"
    day = {0: "today", 1: "tomorrow"}.get(days, when.strftime("%A"))
    clock = when.strftime("%I:%M %p").lstrip("0").replace(":00 ", " ")
    return f"{day} at {clock}"
