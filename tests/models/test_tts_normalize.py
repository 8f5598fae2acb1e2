from __future__ import annotations

import pytest

from models.tts.normalize import (
    digits_to_zh,
    int_to_en,
    int_to_zh,
    latin_to_zh,
    normalize,
    normalize_en,
    normalize_zh,
)


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (15, "十五"),
        (20, "二十"),
        (110, "一百一十"),
        (101, "一百零一"),
        (1005, "一千零五"),
        (1050, "一千零五十"),
        (2000, "两千"),
        (10050, "一万零五十"),
        (12345, "一万二千三百四十五"),
        (20000, "两万"),
        (100000, "十万"),
        (150000, "十五万"),
        (1000001, "一百万零一"),
        (100000000, "一亿"),
        (-3, "负三"),
    ],
)
def test_int_to_zh(n: int, want: str) -> None:
    assert int_to_zh(n) == want


def test_liang_only_before_measure_words() -> None:
    assert int_to_zh(2) == "二"
    assert int_to_zh(2, liang=True) == "两"
    assert normalize_zh("2个人") == "两个人"
    assert normalize_zh("第2名") == "第二名"
    assert normalize_zh("2万") == "两万"
    assert normalize_zh("22个") == "二十二个"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # money
        ("¥50", "五十元"),
        ("50元", "五十元"),
        ("￥50", "五十元"),
        ("2元", "两元"),
        ("¥19.9", "十九点九元"),
        ("现价¥19.9，原价299元", "现价十九点九元，原价二百九十九元"),
        ("$20", "二十美元"),
        ("¥3万", "三万元"),
        ("学费1,280元", "学费一千二百八十元"),
        # time
        ("19:30", "十九点三十分"),
        ("7:05", "七点零五分"),
        ("8:00", "八点"),
        ("2:00", "两点"),
        ("12:30", "十二点三十分"),
        ("19：30", "十九点三十分"),
        ("10:15:30", "十点十五分三十秒"),
        ("晚上7:30上课", "晚上七点三十分上课"),
        # percentages, decimals
        ("50%", "百分之五十"),
        ("12.5%", "百分之十二点五"),
        ("５０％", "百分之五十"),
        ("3.5", "三点五"),
        ("0.25", "零点二五"),
        ("5‰", "千分之五"),
        # phones
        ("13812345678", "幺三八幺二三四五六七八"),
        ("请拨打13812345678联系", "请拨打幺三八幺二三四五六七八联系"),
        ("138-1234-5678", "幺三八，幺二三四，五六七八"),
        ("+86 13812345678", "幺三八幺二三四五六七八"),
        ("010-12345678", "零幺零，幺二三四五六七八"),
        ("0571-87654321-123", "零五七幺，八七六五四三二幺转幺二三"),
        ("400-123-4567", "四零零，幺二三，四五六七"),
        ("4001234567", "四零零幺二三四五六七"),
        # dates
        ("2026-11-23", "二零二六年十一月二十三日"),
        ("2026/11/23", "二零二六年十一月二十三日"),
        ("2026年11月23日", "二零二六年十一月二十三日"),
        ("11月23日", "十一月二十三日"),
        ("11月23号", "十一月二十三号"),
        ("2026年", "二零二六年"),
        # codes and long numbers
        ("订单号20261123001", "订单号二零二六幺幺二三零零幺"),
        ("验证码0571", "验证码零五七幺"),
        # ranges and symbols
        ("3~5天", "三到五天"),
        ("3-5天", "三到五天"),
        ("温度25℃", "温度二十五度"),
        ("1+1=2", "一加一等于二"),
        # Latin letters
        ("OK", "欧开"),
        ("ok吗", "欧开吗"),
        ("APP", "诶批批"),
        ("VIP", "维艾批"),
        ("下载我们的APP", "下载我们的诶批批"),
        ("10km", "十公里"),
        # untouched
        ("我们这周六有一节免费的试听课", "我们这周六有一节免费的试听课"),
        ("", ""),
    ],
)
def test_normalize_zh(text: str, want: str) -> None:
    assert normalize_zh(text) == want


def test_normalized_zh_has_no_digits_or_latin() -> None:
    text = "您好，VIP客户：您的订单2026-11-23 19:30发货，运费¥8.5，优惠20%，客服电话400-800-1234，OK？"
    out = normalize_zh(text)
    assert not any(c.isascii() and c.isalnum() for c in out), out


def test_digits_to_zh() -> None:
    assert digits_to_zh("110") == "幺幺零"
    assert digits_to_zh("110", yao=False) == "一一零"


def test_latin_to_zh_spells_unknown_words() -> None:
    assert latin_to_zh("ABC") == "诶比西"
    assert latin_to_zh("wi-fi") == "歪法"


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (1234, "one thousand two hundred thirty four"),
        (2_000_005, "two million five"),
    ],
)
def test_int_to_en(n: int, want: str) -> None:
    assert int_to_en(n) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("It costs $19.99 today", "It costs nineteen dollars and ninety nine cents today"),
        ("$1", "one dollar"),
        ("Call 555-123-4567", "Call five five five one two three four five six seven"),
        ("Meet at 7:05 pm", "Meet at seven oh five p m"),
        ("At 9:00", "At nine o'clock"),
        ("19:30", "nineteen thirty"),
        ("50% off", "fifty percent off"),
        ("The 23rd of May", "The twenty third of May"),
        ("the 1st and 2nd", "the first and second"),
        ("On 2026-11-23", "On November twenty third, twenty twenty six"),
        ("VIP and OK", "V I P and okay"),
        ("We have 1,234 users", "We have one thousand two hundred thirty four users"),
        ("3.5 stars", "three point five stars"),
        ("Dr. Smith & Mr. Lee", "doctor Smith and mister Lee"),
    ],
)
def test_normalize_en(text: str, want: str) -> None:
    assert normalize_en(text) == want


def test_normalize_dispatches_on_language() -> None:
    assert normalize("50%", "zh") == "百分之五十"
    assert normalize("50%", "en-us") == "fifty percent"
