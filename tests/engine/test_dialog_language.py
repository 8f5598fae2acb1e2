"""The dialplan language beyond the core: conditions, captures, call-back times, A/B variants, grading
rules and overrides, the no_match inbox, and the edit-safety checks."""

from datetime import datetime, time
from pathlib import Path

import pytest

import dialplans
from engine.dialog.capture import parse_number
from engine.dialog.conditions import ConditionError, parse_condition
from engine.dialog.loader import errors, parse
from engine.dialog.prompts import static_prompts
from engine.dialog.runner import Hangup, Listen, Runner, Say
from engine.dialog.schema import Dialplan
from engine.dialog.timeparse import clamp_to_window, describe, parse_when
from engine.ports import Prediction

NOW = datetime(2026, 1, 5, 10, 0)  # a Monday


def p(intent: str, emotion: str = "neutral") -> Prediction:
    return Prediction(intent=intent, confidence=0.9, emotion=emotion)


def plan_of(text: str) -> Dialplan:
    plan, problems = parse(text, "t.yaml")
    assert plan is not None and not errors(problems), problems
    return plan


def test_conditions() -> None:
    env = {"score": 9, "tags": ["booked"], "city": "上海", "n": "7"}
    assert parse_condition("score >= 9 and 'booked' in tags")(env)
    assert parse_condition("not (score < 9) or missing == 1")(env)
    assert parse_condition("city == \"上海\" and 'dnc' not in tags")(env)
    assert parse_condition("n > 6")(env)  # digits captured as text compare as numbers
    assert not parse_condition("missing > 3")(env)  # null never compares
    assert parse_condition("missing == null")(env)
    assert parse_condition("score >= 9").names == {"score"}
    for bad in ("score >=", "score = 9", "(a", "a b", ""):
        with pytest.raises(ConditionError):
            parse_condition(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("晚上七点", datetime(2026, 1, 5, 19, 0)),
        ("明天上午", datetime(2026, 1, 6, 10, 0)),
        ("下午三点半", datetime(2026, 1, 5, 15, 30)),
        ("半小时后再打", datetime(2026, 1, 5, 10, 30)),
        ("周五下午", datetime(2026, 1, 9, 15, 0)),
        ("我在开会，晚点再打吧", datetime(2026, 1, 5, 11, 0)),
        ("三点", datetime(2026, 1, 5, 15, 0)),
        ("九点", datetime(2026, 1, 6, 9, 0)),  # 9:00 has passed today
        ("tomorrow morning", datetime(2026, 1, 6, 10, 0)),
        ("call me at 7 pm", datetime(2026, 1, 5, 19, 0)),
        ("in an hour", datetime(2026, 1, 5, 11, 0)),
        ("没时间", None),
        ("this is fine", None),
    ],
)
def test_callback_times(text: str, expected: datetime | None) -> None:
    assert parse_when(text, NOW) == expected


def test_callback_times_are_clamped_into_the_calling_window() -> None:
    assert clamp_to_window(datetime(2026, 1, 5, 21, 30)) == datetime(2026, 1, 6, 9, 0)
    assert clamp_to_window(datetime(2026, 1, 5, 7, 0)) == datetime(2026, 1, 5, 9, 0)
    assert clamp_to_window(datetime(2026, 1, 5, 19, 0), (time(10, 0), time(18, 0))) == datetime(
        2026, 1, 6, 10, 0
    )
    assert describe(datetime(2026, 1, 5, 19, 0), NOW) == "今天晚上7点"
    assert describe(datetime(2026, 1, 6, 9, 30), NOW, "en-US") == "tomorrow at 9:30 AM"


def test_numbers() -> None:
    assert [parse_number(t) for t in ("打9分吧", "九分", "十分", "八", "eight", "一般般", "满分")] == [
        9,
        9,
        10,
        8,
        8,
        None,
        None,
    ]


def test_busy_callback_captures_time_in_the_campaign_window() -> None:
    r = Runner(dialplans.get("trial-class-zh"), now=NOW, calling_window=(time(9, 0), time(18, 0)))
    r.start()
    acts = r.on_reply("我在开会，晚上七点再打吧", p("busy_callback"))
    assert isinstance(acts[-1], Hangup) and "callback" in r.state.tags
    assert r.state.variables["callback_time"] == "2026-01-06T09:00"
    say = next(a for a in acts if isinstance(a, Say))
    assert "明天上午9点" in say.text


LANG = """
name: lang
variables: {vip: false, score: null}
start: q
intents:
  coupon: {examples: [优惠券]}
nodes:
  q:
    type: ask
    say: [第一种说法？, 第二种说法？]
    capture: {var: score, kind: number, min: 0, max: 10, dtmf_map: {"*": 10}}
    branches:
      - regex: "^\\\\d{3}$"
        goto: code
      - emotion: angry
        goto: sorry
      - intent: coupon
        when: vip == true
        goto: vip_end
        grade: A
      - when: score >= 9
        goto: high
      - dtmf: ["1", "2"]
        goto: low
    default: low
    no_match: {reprompt: [换个说法一？, 换个说法二？], retries: 2}
  code: {type: hangup, tag: code}
  sorry: {type: hangup, tag: sorry}
  vip_end: {type: hangup, tag: vip, follow_up: {sms: vip_coupon, wecom: vip_advisor}}
  high: {type: hangup, tag: high}
  low: {type: hangup, tag: low}
globals:
  - intent: stop_calling
    then: hangup
    tag: dnc
  - intent: ask_identity
    say: 我是助理。
    max_times: 1
grading:
  rules:
    - {grade: B, name: high score, when: "score >= 9"}
variants:
  b:
    variables: {vip: true}
    nodes:
      q: {say: B版本的问题？}
"""


def run(text: str, pred: Prediction | None, *, variant: str | None = None, dtmf: str | None = None) -> Runner:
    r = Runner(plan_of(LANG).with_variant(variant), now=NOW)
    r.start()
    r.on_reply(text, pred, dtmf=dtmf)
    return r


def test_branch_matchers() -> None:
    assert run("123", p("other")).state.tags == ["code"]
    assert run("烦死了", p("other", "angry")).state.tags == ["sorry"]
    assert run("打九分", p("other")).state.tags == ["high"]
    assert run("", None, dtmf="*").state.tags == ["high"]
    assert run("", None, dtmf="2").state.tags == ["low"]
    assert run("我要优惠券", p("coupon")).state.node == "q"  # vip is false: no branch, a reprompt
    r = run("我要优惠券", p("coupon"), variant="b")
    assert r.state.tags == ["vip"] and r.grade() == ("A", "A: override at q")
    assert r.state.variables["ab_variant"] == "b"
    assert r.outcome_variables()["follow_up"] == [
        {"channel": "sms", "template": "vip_coupon"},
        {"channel": "wecom", "template": "vip_advisor"},
    ]


def test_stop_calling_is_never_swallowed_by_an_emotion_branch() -> None:
    r = run("别再打了烦死了", p("stop_calling", "angry"))
    assert r.state.tags == ["dnc"] and r.state.ended


def test_grading_rules_record_the_rule_that_fired() -> None:
    r = run("打九分", p("other"))
    assert r.grade() == ("B", "B: high score")


def test_no_match_rephrases_then_falls_back_and_keeps_the_words() -> None:
    r = Runner(plan_of(LANG), now=NOW)
    r.start()
    texts = []
    for words in ("嗯那个", "蓝色的", "不知道"):
        acts = r.on_reply(words, p("other"))
        texts += [a.text for a in acts if isinstance(a, Say)]
    assert texts[:2] == ["换个说法一？", "换个说法二？"]
    assert r.state.node == "low"
    inbox = r.outcome_variables()["no_match"]
    assert [x["text"] for x in inbox] == ["嗯那个", "蓝色的", "不知道"] and inbox[0]["node"] == "q"


def test_global_max_times_then_no_match() -> None:
    r = Runner(plan_of(LANG), now=NOW)
    r.start()
    acts = r.on_reply("你是谁", p("ask_identity"))
    assert isinstance(acts[0], Say) and acts[0].kind == "global" and isinstance(acts[-1], Listen)
    acts = r.on_reply("你是谁", p("ask_identity"))
    assert isinstance(acts[0], Say) and acts[0].kind == "reprompt"


def test_variants_are_chosen_stably_and_prerendered() -> None:
    plan = plan_of(LANG)
    assert plan.choose_variant("13800000000") == plan.choose_variant("13800000000") == "b"
    assert "B版本的问题？" in static_prompts(plan)
    assert Runner(plan.with_variant("b")).start()[0] == Say("B版本的问题？", "q")


def test_legal_nodes_are_never_interruptible_and_carry_min_play() -> None:
    plan = plan_of(
        "name: t\nstart: a\nnodes:\n"
        "  a: {type: say, say: 本通话录音, legal: true, interruptible: true, next: b}\n"
        "  b: {type: ask, say: 好吗？, min_play_s: 1.5, default: c}\n"
        "  c: {type: hangup}\n"
    )
    acts = Runner(plan).start()
    assert isinstance(acts[0], Say) and not acts[0].interruptible
    assert isinstance(acts[1], Say) and acts[1].interruptible and acts[1].min_play_s == 1.5


def problems_of(text: str, base_dir: Path | None = None) -> list[str]:
    _, problems = parse(text, "p.yaml", base_dir=base_dir)
    return [str(x) for x in problems]


def test_edit_safety_checks(tmp_path: Path) -> None:
    msgs = problems_of(
        """name: t
voice: zm_nobody
start: a
variables: {x: 1}
nodes:
  a:
    type: ask
    say: hi
    wav: greet.wav
    branches:
      - when: "y > 2"
        goto: b
      - when: "x >>"
        goto: b
      - regex: "(["
        goto: b
      - emotion: sleepy
        goto: b
  b:
    type: ask
    say: again
    default: a
""",
        tmp_path,
    )
    joined = "\n".join(msgs)
    assert "p.yaml:2:1: unknown voice 'zm_nobody'" in joined and "zm_yunjian" in joined
    assert "p.yaml:6:3: ask node 'a' has no default" in joined
    assert "condition uses undeclared variable 'y'" in joined
    assert "bad condition" in joined and "bad regex" in joined and "unknown emotion 'sleepy'" in joined
    assert "recorded prompt 'greet.wav' not found" in joined
    assert "no path from start reaches a hangup" in joined


def test_cycle_with_no_exit_and_say_loops() -> None:
    msgs = problems_of(
        """name: t
start: a
nodes:
  a: {type: ask, say: q, branches: [{intent: affirm, goto: end}], default: b}
  b: {type: ask, say: q2, default: c}
  c: {type: say, say: s, next: b}
  end: {type: hangup}
"""
    )
    assert any("p.yaml:5:3: cycle with no exit: b, c" in m for m in msgs), msgs
    msgs = problems_of(
        "name: t\nstart: a\nnodes:\n  a: {type: say, next: b}\n  b: {type: say, next: a}\n"
        "  c: {type: hangup}\n"
    )
    assert any("say nodes loop without asking: a -> b -> a" in m for m in msgs), msgs


def test_voice_language_mismatch_and_long_prompts_warn() -> None:
    long_zh = "这是一段非常非常长的提示语" * 4
    _, problems = parse(
        "name: t\nlanguage: zh-CN\nvoice: af_heart\nstart: a\nnodes:\n"
        f"  a: {{type: hangup, say: {long_zh}}}\n",
        "v.yaml",
    )
    assert any("speaks en-US" in x.message and x.is_error for x in problems), problems
    warn = [x for x in problems if not x.is_error]
    assert warn and "over 8 s" in warn[0].message and str(warn[0]).startswith("v.yaml:6:21: warning:")


def test_variant_errors_are_reported() -> None:
    msgs = problems_of(
        "name: t\nstart: a\nnodes:\n  a: {type: hangup}\nvariants:\n  b: {nodes: {zz: {say: x}}}\n"
    )
    assert any("variant 'b' overrides unknown node 'zz'" in m for m in msgs), msgs


def test_shipped_prompts_fit_in_eight_seconds() -> None:
    for name in dialplans.names():
        _, problems = parse(dialplans.resolve(name).read_text(encoding="utf-8"), name)
        assert problems == [], problems
