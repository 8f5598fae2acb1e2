from __future__ import annotations

import pytest

from engine.intents import BASE_INTENTS, Intent
from engine.ports import Classifier, ClassifyContext
from models.nlu.rules import RulesClassifier, normalize_reply

C = RulesClassifier()

ZH_CASES = [
    # do-not-call / complaint: must never be missed, and win over everything else
    ("别再打了", Intent.STOP_CALLING),
    ("别在打了，烦死了", Intent.STOP_CALLING),  # ASR homophone 在/再
    ("不要再打了", Intent.STOP_CALLING),
    ("以后别给我打电话了", Intent.STOP_CALLING),
    ("你们再打我就投诉", Intent.STOP_CALLING),
    ("好的好的，别再打了", Intent.STOP_CALLING),
    ("把我的号码删了", Intent.STOP_CALLING),
    ("別再打了", Intent.STOP_CALLING),  # traditional characters from ASR
    ("我要投诉你们", Intent.COMPLAINT),
    ("你这是骚扰电话", Intent.COMPLAINT),
    ("我打12315", Intent.COMPLAINT),
    ("骗子吧你们", Intent.COMPLAINT),
    # busy
    ("我在开会", Intent.BUSY_CALLBACK),
    ("再开会呢，晚点再打", Intent.BUSY_CALLBACK),
    ("现在没空", Intent.BUSY_CALLBACK),
    ("在忙", Intent.BUSY_CALLBACK),
    ("不好意思我在开车", Intent.BUSY_CALLBACK),
    ("我现在不方便", Intent.BUSY_CALLBACK),
    ("改天吧", Intent.BUSY_CALLBACK),
    # questions
    ("多少钱", Intent.ASK_PRICE),
    ("这个价格是多少", Intent.ASK_PRICE),
    ("怎么收费的", Intent.ASK_PRICE),
    ("贵不贵啊", Intent.ASK_PRICE),
    ("多少錢", Intent.ASK_PRICE),
    ("你是谁啊", Intent.ASK_IDENTITY),
    ("你哪里的", Intent.ASK_IDENTITY),
    ("你们是哪个公司的", Intent.ASK_IDENTITY),
    ("你怎么有我的电话", Intent.ASK_IDENTITY),
    ("具体是什么课", Intent.ASK_DETAIL),
    ("在哪里上课", Intent.ASK_DETAIL),
    ("转人工", Intent.HUMAN_AGENT),
    ("我要找真人", Intent.HUMAN_AGENT),
    ("你是机器人吧", Intent.HUMAN_AGENT),
    ("打错了", Intent.WRONG_PERSON),
    ("不是我", Intent.WRONG_PERSON),
    ("我不是他本人", Intent.WRONG_PERSON),
    ("你说什么我没听清", Intent.REPEAT),
    ("再说一遍", Intent.REPEAT),
    ("啊？", Intent.REPEAT),
    ("已经报过了", Intent.ALREADY_DONE),
    ("我已经买了", Intent.ALREADY_DONE),
    ("孩子已经在别家上了", Intent.ALREADY_DONE),
    ("我考虑一下", Intent.THINKING),
    ("让我想想", Intent.THINKING),
    ("我跟家里商量一下", Intent.THINKING),
    # refusals
    ("不需要", Intent.NOT_INTERESTED),
    ("不须要", Intent.NOT_INTERESTED),  # ASR homophone 须/需 (folded)
    ("不感兴趣，谢谢", Intent.NOT_INTERESTED),
    ("不用了", Intent.NOT_INTERESTED),
    ("不太需要", Intent.NOT_INTERESTED),
    ("暂时不需要", Intent.NOT_INTERESTED),
    ("没兴趣", Intent.NOT_INTERESTED),
    ("算了吧", Intent.NOT_INTERESTED),
    ("不需要，我在开会", Intent.NOT_INTERESTED),
    # yes / no
    ("好", Intent.AFFIRM),
    ("好的", Intent.AFFIRM),
    ("好的。", Intent.AFFIRM),
    ("可以", Intent.AFFIRM),
    ("可以啊", Intent.AFFIRM),
    ("行", Intent.AFFIRM),
    ("嗯", Intent.AFFIRM),
    ("嗯嗯", Intent.AFFIRM),
    ("恩", Intent.AFFIRM),
    ("对", Intent.AFFIRM),
    ("对对对", Intent.AFFIRM),
    ("是的", Intent.AFFIRM),
    ("没问题", Intent.AFFIRM),
    ("有兴趣", Intent.AFFIRM),
    ("挺感兴趣的", Intent.AFFIRM),
    ("好啊，可以的", Intent.AFFIRM),
    ("不错啊", Intent.AFFIRM),
    ("不是不需要", Intent.AFFIRM),
    ("也不是不行", Intent.AFFIRM),
    ("嗯 好 的", Intent.AFFIRM),  # space-separated ASR output
    ("不", Intent.DENY),
    ("不是", Intent.DENY),
    ("没有", Intent.DENY),
    ("不行", Intent.DENY),
    ("不好", Intent.DENY),
    ("不可以", Intent.DENY),
    ("不对", Intent.DENY),
    ("不是的", Intent.DENY),
    # neither
    ("好不好啊", Intent.OTHER),
    ("喂", Intent.OTHER),
    ("喂你好", Intent.OTHER),
    ("", Intent.OTHER),
]

EN_CASES = [
    ("stop calling me", Intent.STOP_CALLING),
    ("Don't call me again!", Intent.STOP_CALLING),
    ("dont call", Intent.STOP_CALLING),
    ("please take me off your list", Intent.STOP_CALLING),
    ("yes okay but stop calling me", Intent.STOP_CALLING),
    ("this is harassment", Intent.COMPLAINT),
    ("I'm going to report you", Intent.COMPLAINT),
    ("I'm busy right now", Intent.BUSY_CALLBACK),
    ("call me later", Intent.BUSY_CALLBACK),
    ("I'm in a meeting", Intent.BUSY_CALLBACK),
    ("How much is it?", Intent.ASK_PRICE),
    ("what's the price", Intent.ASK_PRICE),
    ("Who is this?", Intent.ASK_IDENTITY),
    ("who's calling", Intent.ASK_IDENTITY),
    ("can I talk to a real person", Intent.HUMAN_AGENT),
    ("are you a robot", Intent.HUMAN_AGENT),
    ("wrong number", Intent.WRONG_PERSON),
    ("pardon?", Intent.REPEAT),
    ("sorry I didn't catch that", Intent.REPEAT),
    ("I already did that", Intent.ALREADY_DONE),
    ("let me think about it", Intent.THINKING),
    ("I'm not sure", Intent.THINKING),
    ("tell me more", Intent.ASK_DETAIL),
    ("not interested", Intent.NOT_INTERESTED),
    ("no thanks", Intent.NOT_INTERESTED),
    ("I don't need it", Intent.NOT_INTERESTED),
    ("yes", Intent.AFFIRM),
    ("Yes.", Intent.AFFIRM),
    ("sure", Intent.AFFIRM),
    ("ok", Intent.AFFIRM),
    ("yeah that sounds good", Intent.AFFIRM),
    ("no problem", Intent.AFFIRM),
    ("no", Intent.DENY),
    ("nope", Intent.DENY),
    ("No, I don't think so.", Intent.DENY),
    ("hello?", Intent.OTHER),
]


@pytest.mark.parametrize(("text", "want"), ZH_CASES)
def test_zh_intents(text: str, want: str) -> None:
    assert C.classify_one(text).intent == want


@pytest.mark.parametrize(("text", "want"), EN_CASES)
def test_en_intents(text: str, want: str) -> None:
    assert C.classify_one(text).intent == want


def test_every_predicted_intent_is_a_base_intent() -> None:
    for text, _ in ZH_CASES + EN_CASES:
        assert C.classify_one(text).intent in BASE_INTENTS


def test_priority_intents_are_confident() -> None:
    for text in ("别再打了", "我要投诉", "stop calling"):
        assert C.classify_one(text).confidence >= 0.9


def test_double_negation_is_less_confident_than_plain_yes() -> None:
    assert C.classify_one("也不是不行").confidence < C.classify_one("好的").confidence


def test_yes_no_context_raises_confidence_open_lowers_it() -> None:
    text = "嗯，那个可以吧我觉得"
    neutral = C.classify_one(text).confidence
    assert C.classify_one(text, ClassifyContext(expects="yes_no")).confidence > neutral
    assert C.classify_one(text, ClassifyContext(expects="open")).confidence < neutral


def test_extra_intents_from_the_dialplan() -> None:
    ctx = ClassifyContext(extra_intents={"ask_trial_time": ["几点上课", "什么时间上课"]})
    assert C.classify_one("周六几点上课呀", ctx).intent == "ask_trial_time"
    # priority intents still win over dialplan keywords
    assert C.classify_one("几点上课？别再打了", ctx).intent == Intent.STOP_CALLING


def test_language_override() -> None:
    assert C.classify_one("ok", ClassifyContext(language="en")).intent == Intent.AFFIRM


@pytest.mark.parametrize(
    ("text", "emotion"),
    [
        ("你们这是骚扰", "angry"),
        ("滚", "angry"),
        ("烦死了", "angry"),
        ("别再打了", "angry"),
        ("stop calling me", "angry"),
        ("leave me alone", "angry"),
        ("不需要", "negative"),
        ("算了", "negative"),
        ("not interested", "negative"),
        ("好的谢谢", "positive"),
        ("太好了", "positive"),
        ("great, thanks", "positive"),
        ("我在开会", "neutral"),
        ("多少钱", "neutral"),
    ],
)
def test_emotion(text: str, emotion: str) -> None:
    assert C.classify_one(text).emotion == emotion


def test_normalize_reply() -> None:
    assert normalize_reply("  嗯 好 的！ ") == "嗯好的"
    assert normalize_reply("Don’t CALL") == "dont call"
    assert normalize_reply("ＯＫ") == "ok"


async def test_batch_classify_through_the_port() -> None:
    clf: Classifier = C
    preds = await clf.classify(["好的", "别再打了", "多少钱"])
    assert [p.intent for p in preds] == [Intent.AFFIRM, Intent.STOP_CALLING, Intent.ASK_PRICE]
    assert all(p.source == "rules-v1" for p in preds)
    assert clf.name == "rules-v1"
