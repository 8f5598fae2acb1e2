import pytest

import dialplans
from engine.dialog.grading import ConversationStats, grade
from engine.dialog.loader import load, parse
from engine.dialog.runner import Hangup, Listen, Runner, Say
from engine.dispositions import Disposition
from engine.errors import DialplanError
from engine.ports import Prediction


def p(intent: str) -> Prediction:
    return Prediction(intent=intent, confidence=0.9)


def test_shipped_dialplans_validate() -> None:
    assert {"trial-class-zh", "trial-class-en"} <= set(dialplans.names())
    for name in dialplans.names():
        plan, problems = parse(dialplans.resolve(name).read_text(encoding="utf-8"), name)
        assert plan is not None and problems == [], problems


def test_happy_path_books() -> None:
    r = Runner(dialplans.get("trial-class-zh"))
    acts = r.start()
    assert isinstance(acts[0], Say) and acts[0].kind == "preamble" and not acts[0].interruptible
    assert "启明教育" in acts[0].text
    assert isinstance(acts[-1], Listen) and acts[-1].node == "greet"
    acts = r.on_reply("好的可以", p("affirm"))
    assert isinstance(acts[-1], Hangup)
    assert r.state.tags == ["interested", "booked"]


def test_global_returns_to_node_and_stop_calling_ends() -> None:
    r = Runner(dialplans.get("trial-class-zh"))
    r.start()
    acts = r.on_reply("你是谁啊", p("ask_identity"))
    assert isinstance(acts[0], Say) and acts[0].kind == "global"
    assert isinstance(acts[-1], Listen) and acts[-1].node == "greet"
    acts = r.on_reply("别再给我打电话了", p("stop_calling"))
    assert isinstance(acts[-1], Hangup) and "dnc" in r.state.tags


def test_no_input_reprompts_then_ends() -> None:
    r = Runner(dialplans.get("trial-class-zh"))
    r.start()
    acts = r.on_no_input()
    assert isinstance(acts[0], Say) and acts[0].kind == "reprompt"
    acts = r.on_no_input()
    assert isinstance(acts[-1], Hangup) and r.state.node == "goodbye_silent"


def test_dtmf_and_keywords_branch() -> None:
    text = """
name: t
start: q
nodes:
  q: {type: ask, say: "press 1", branches: [{dtmf: "1", goto: y}, {keywords: [lesson], goto: y}], default: n}
  y: {type: hangup, say: "yes", tag: y}
  n: {type: hangup, say: "no"}
"""
    plan, problems = parse(text)
    assert plan is not None and not problems
    r = Runner(plan)
    r.start()
    assert isinstance(r.on_reply("", None, dtmf="1")[-1], Hangup) and r.state.tags == ["y"]
    r = Runner(plan)
    r.start()
    r.on_reply("tell me about the LESSON", p("other"))
    assert r.state.node == "y"


def test_errors_name_line_and_column(tmp_path: object) -> None:
    text = """name: t
start: q
nodes:
  q:
    type: ask
    say: "hi {{who}}"
    branches:
      - intent: affirmm
        goto: nowhere
    default: end
  end: {type: hangup}
  orphan: {type: hangup}
"""
    _plan, problems = parse(text, "t.yaml")
    msgs = [str(x) for x in problems]
    assert any("t.yaml:9:" in m and "unknown node 'nowhere'" in m for m in msgs), msgs
    assert any("t.yaml:8:" in m and "unknown intent 'affirmm'" in m for m in msgs), msgs
    assert any("undeclared template variable 'who'" in m for m in msgs), msgs
    assert any("'orphan' is unreachable" in m for m in msgs), msgs


def test_yaml_syntax_and_schema_errors() -> None:
    _, problems = parse("name: t\nnodes: [\n", "bad.yaml")
    assert problems and "YAML syntax" in problems[0].message and problems[0].line >= 2
    _, problems = parse("name: t\nstart: a\nnodes:\n  a: {type: ask, say: x}\n", "s.yaml")
    assert any("default" in x.message and x.line == 4 for x in problems), problems
    _, problems = parse("name: t\nstart: a\nnodes:\n  a: {type: speak}\n", "s.yaml")
    assert any("type must be one of" in (x.hint or "") for x in problems), problems


def test_bare_yes_gets_quoting_hint() -> None:
    _, problems = parse("name: t\nstart: a\nnodes:\n  a: {type: hangup, say: yes}\n", "b.yaml")
    assert problems and all(x.line == 4 for x in problems)
    assert any("quote the text" in (x.hint or "") for x in problems)


def test_recording_requires_notice() -> None:
    text = "name: t\nstart: a\npreamble: {recording: true}\nnodes:\n  a: {type: hangup}\n"
    _, problems = parse(text, "r.yaml")
    assert any("recording_notice" in x.message for x in problems)


def test_load_raises_with_location(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(DialplanError, match="not found"):
        load("/nonexistent/x.yaml")


def test_grades() -> None:
    assert grade(ConversationStats(connected=False))[0] == "E"
    s = ConversationStats(connected=True)
    for i in ("ask_price", "ask_detail", "affirm"):
        s.count(i)
    assert grade(s)[0] == "A"
    s = ConversationStats(connected=True)
    for i in ("affirm", "deny", "other"):
        s.count(i)
    assert grade(s)[0] == "B"
    s = ConversationStats(connected=True)
    for i in ("deny", "not_interested"):
        s.count(i)
    g, rule = grade(s)
    assert g == "C" and rule.startswith("C:")
    s = ConversationStats(connected=True)
    for i in ("other", "other", "thinking"):
        s.count(i)
    assert grade(s)[0] == "D"
    assert Disposition.ANSWERED.value == "answered"
