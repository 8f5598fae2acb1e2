import pytest

from engine.call.amd import decide
from engine.dispositions import Disposition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("您好，您拨打的用户暂时无法接听，请在提示音后留言", Disposition.VOICEMAIL),
        ("您好，我是机主的智能助理，请问您有什么事", Disposition.VOICEMAIL),
        ("您拨打的电话已关机", Disposition.POWERED_OFF),
        ("您拨打的号码是空号，请查证后再拨", Disposition.INVALID_NUMBER),
        ("您拨打的电话已停机", Disposition.SUSPENDED),
        ("您拨打的电话正在通话中，请稍后再拨", Disposition.BUSY),
        ("您拨打的电话暂时无法接通，请稍后再拨", Disposition.UNREACHABLE),
        ("您拨打的电话暂时无人接听", Disposition.NO_ANSWER),
        ("Hi, you've reached Sam. Please leave a message after the tone.", Disposition.VOICEMAIL),
        ("The number you have dialed is not in service", Disposition.INVALID_NUMBER),
        # what whisper base actually heard on 8 kHz announcements (bench/results/amd.json)
        ("您好您播打的电话已关节。", Disposition.POWERED_OFF),
        ("您好您拨打的电话与关机。", Disposition.POWERED_OFF),
        ("您好您播打的电话以情节。", Disposition.SUSPENDED),
        ("您好,基主现在不方便接听,请在提示您后流言。", Disposition.VOICEMAIL),
        ("您好,我是基主的智能助理。请问您有什么事情?", Disposition.VOICEMAIL),
    ],
)
def test_machine_words(text: str, expected: Disposition) -> None:
    d = decide(text)
    assert d is not None and d.disposition is expected


@pytest.mark.parametrize(
    "text",
    ["喂，你好", "哪位？", "hello?", "yes, speaking", "", "我在开车", "我膝盖关节不好", "这个情节很好看"],
)
def test_human_words(text: str) -> None:
    assert decide(text) is None
