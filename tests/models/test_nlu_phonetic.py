"""Sound-alike matching of do-not-call / complaint phrases (models.nlu.phonetic) and ASR-style noise."""

from __future__ import annotations

import random

import pytest

from engine.intents import Intent
from engine.ports import ClassifyContext
from models.nlu.asr_noise import asr_noise, asr_noise_zh
from models.nlu.corpus import load_asr_eval, load_corpus, load_heldout
from models.nlu.phonetic import fold, sounds_like_complaint, sounds_like_stop_calling, syllables
from models.nlu.rules import RulesClassifier

C = RulesClassifier()
ZH = ClassifyContext(language="zh")


def test_fold_merges_the_sounds_asr_confuses() -> None:
    assert fold("shou") == fold("sou") == fold("sao")  # 收 搜 骚
    assert fold("shen") == fold("shan")  # 深 删
    assert fold("ni") == fold("li")  # n/l
    assert fold("jing") == fold("jin")
    assert fold("bie") == "bie"


def test_syllables_keep_digit_runs_and_skip_latin() -> None:
    assert syllables("打12315投诉 ok") == "da 12315 tao su"  # folded: ou -> ao
    assert syllables("hello") == ""


@pytest.mark.parametrize(
    "garbled",
    [
        "别再达了",  # 打 -> 达
        "你们能不能别在大了",  # 再 -> 在, 打 -> 大
        "不要再收饶我了",  # 骚扰 -> 收饶
        "深掉我的电话",  # 删掉 -> 深掉
        "以后都别再搭了",
        "把我拉嘿",  # 拉黑 -> 拉嘿
        "再打就报井",  # 报警 -> 报井
        "別再達了",  # traditional characters
    ],
)
def test_asr_garbled_do_not_call_is_stop_calling(garbled: str) -> None:
    assert C.classify_one(garbled, ZH).intent == Intent.STOP_CALLING, syllables(garbled)


@pytest.mark.parametrize(
    "garbled",
    [
        "哺摇再骚扰我了",  # 不要 garbled, 骚扰 intact: do-not-call wins over the complaint keyword
        "不要才打了",  # 再 -> 才
        "不要菜给我打了",  # 再 -> 菜
        "别再它了",  # 打 -> 它, at the very end
        "撇打了",  # 别 -> 撇
        "普要再打电话了",  # 不 -> 普
        "服要再打了",  # 不 -> 服
        "涨掉我的电话",  # 删 -> 涨, kept apart by the object 我的电话
        "参掉我的号码",
        "斋打我舅投诉",  # 再打我就投诉: do-not-call, not only a complaint
    ],
)
def test_looser_sound_alikes_of_do_not_call_phrases(garbled: str) -> None:
    assert sounds_like_stop_calling(garbled), syllables(garbled)
    assert C.classify_one(garbled, ZH).intent == Intent.STOP_CALLING


@pytest.mark.parametrize(
    "text",
    [
        "不要他了",  # 他 after 不要 without 再: "I don't want him"
        "别管他了",
        "别再他那儿等了",  # 再 + 他 not at the end
        "我要特别大的",  # ...bie da de
        "服药再打针",  # fu yao zai da + zhen: an injection
        "不要菜了",
        "我才打了一会儿游戏",
        "删掉那张照片",  # 删掉 without 我的号码/电话
        "张掉了一颗牙",
        "你们天天骚扰我",  # a complaint, not a do-not-call request
        "骚扰电话太多了",
    ],
)
def test_looser_sound_alikes_do_not_fire_on_ordinary_replies(text: str) -> None:
    assert not sounds_like_stop_calling(text), syllables(text)
    assert C.classify_one(text, ZH).intent != Intent.STOP_CALLING


@pytest.mark.parametrize("garbled", ["我要头诉你们", "你们这是搜饶", "我去公信部举法", "天天扫绕烦死了"])
def test_asr_garbled_complaint_is_complaint(garbled: str) -> None:
    assert C.classify_one(garbled, ZH).intent in (Intent.COMPLAINT, Intent.STOP_CALLING)
    assert sounds_like_complaint(garbled)


@pytest.mark.parametrize(
    "text",
    [
        "不要大的要小的",  # shares 不要 + da, but is about size
        "等我下班再打",  # a callback, not a refusal
        "中午十二点半再打过来",
        "打九分吧",
        "老师很负责",
        "看片子要多久",  # 片子 (an x-ray) is not 骗子
        "别担心",
        "不要在大厅等",
        "我在大连",
    ],
)
def test_sound_alike_rules_do_not_fire_on_ordinary_replies(text: str) -> None:
    assert not sounds_like_stop_calling(text)
    assert C.classify_one(text, ZH).intent != Intent.STOP_CALLING


def test_no_stop_calling_false_positives_on_any_other_labelled_example() -> None:
    """Every corpus, held-out and through-ASR example of another intent stays out of stop_calling."""
    examples = [*load_corpus(), *load_heldout(), *load_asr_eval()]
    fps = [
        (e.intent, e.text)
        for e in examples
        if e.intent != Intent.STOP_CALLING
        and C.classify_one(e.text, ClassifyContext(language=e.lang)).intent == Intent.STOP_CALLING
    ]
    assert not fps
    assert len(examples) > 2500


def test_through_asr_stop_calling_caught_whenever_the_transcript_kept_the_sounds() -> None:
    """The rules alone catch every through-ASR do-not-call request whose transcript still contains
    a do-not-call phrase by sound; the rest are empty or unrelated transcripts (counted as misses)."""
    rows = [e for e in load_asr_eval() if e.intent == Intent.STOP_CALLING]
    caught = [
        e for e in rows if C.classify_one(e.text, ClassifyContext(language=e.lang)).intent == "stop_calling"
    ]
    # 11 of 17 in the committed set; the misses: "Don't come again." (no evidence alone, see below), an
    # empty transcript and four with no do-not-call sound left (这些人是不在意 for 打什么打别打了)
    assert len(caught) >= 11, [e.text for e in rows if e not in caught]


@pytest.mark.parametrize(
    "text",
    ["也不是不行", "不是不需要", "倒也不是不想", "我没说不行", "不是不可以"],
)
def test_negation_traps_are_affirm(text: str) -> None:
    assert C.classify_one(text, ZH).intent == Intent.AFFIRM


@pytest.mark.parametrize("text", ["不用不用", "不用了谢谢", "真不需要"])
def test_plain_refusals_are_not_affirm(text: str) -> None:
    assert C.classify_one(text, ZH).intent in (Intent.NOT_INTERESTED, Intent.DENY)


@pytest.mark.parametrize(
    "text",
    [
        "don't call me again",
        "quit calling me",
        "please don't ring here anymore",
        "Stop calling me.",
        "remove my number",
        "Please take me off your list.",
    ],
)
def test_english_do_not_call_variants(text: str) -> None:
    assert C.classify_one(text, ClassifyContext(language="en")).intent == Intent.STOP_CALLING


@pytest.mark.parametrize("text", ["Don't come again.", "come again", "don't come here again tomorrow"])
def test_english_come_again_alone_is_no_do_not_call_evidence(text: str) -> None:
    """A lone "don't come again" (a visit, or ASR's guess at "call") never ends a call by the rules."""
    assert C.classify_one(text, ClassifyContext(language="en")).intent != Intent.STOP_CALLING


@pytest.mark.parametrize("text", ["he doesn't live here anymore", "it doesn't hurt anymore", "don't worry"])
def test_english_anymore_is_not_stop_calling(text: str) -> None:
    assert C.classify_one(text, ClassifyContext(language="en")).intent != Intent.STOP_CALLING


def test_asr_noise_is_deterministic_and_changes_text() -> None:
    a = [asr_noise_zh("我现在在开会晚点再打给我", random.Random(s)) for s in range(20)]
    b = [asr_noise_zh("我现在在开会晚点再打给我", random.Random(s)) for s in range(20)]
    assert a == b
    assert sum(1 for x in a if x.rstrip("。？!，") != "我现在在开会晚点再打给我") >= 10
    assert asr_noise("hello", "en", random.Random(0)).lower().startswith("hello")
    assert asr_noise_zh("ok", random.Random(0)) == "ok"
