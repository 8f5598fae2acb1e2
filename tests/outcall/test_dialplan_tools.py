"""`outcall dialplan chat|test|graph|schema|inbox|validate` — the designer tools, on the real runner and
the real rules classifier."""

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

import dialplans
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.sqlite import SqliteStore
from outcall.cli import main
from outcall.dialplan_tools import chat, default_classifier, graph, inbox_rows, load_classifier


def test_chat_reads_a_pipe_and_shows_node_intent_and_variables() -> None:
    out = io.StringIO()
    script = "你是谁\n/interrupt 多少钱\n/silence\n/dtmf 1\n/restart\n我在开会，晚上七点再打吧\n/vars\n"
    chat(
        dialplans.get("trial-class-zh"),
        variables={"brand": "测试教育"},
        stdin=io.StringIO(script),
        stdout=out,
        classifier=default_classifier(),
    )
    text = out.getvalue()
    assert "bot[preamble]: 您好，我是测试教育的智能助理。" in text
    assert "intent: ask_identity (0.85" in text and "node: greet" in text
    assert "bot[price]:" in text and "node: price" in text  # the interrupt answered the question
    assert "bot[reprompt]:" in text
    assert "intent: dtmf:1" in text
    assert text.count("bot[preamble]") == 2  # /restart
    assert '"callback_time":' in text and "晚上7点再联系您" in text
    assert "grade: " in text


def test_dialplan_test_cli_passes_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "test", "trial-class-en"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "passed (classifier rules-v1)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "dialplan: trial-class-en\ncases:\n  - name: wrong on purpose\n    turns: [Yes please]\n"
        "    expect: {tags: [refused], grade: A}\n",
        encoding="utf-8",
    )
    assert main(["dialplan", "test", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "tag 'refused' missing" in out and "grade B" in out


def test_graph_formats(capsys: pytest.CaptureFixture[str]) -> None:
    plan = dialplans.get("nps-survey-zh")
    mermaid = graph(plan, "mermaid")
    assert mermaid.startswith("flowchart TD") and "n_score -->|score >= 9| n_promoter" in mermaid
    dot = graph(plan, "dot")
    assert dot.startswith('digraph "nps-survey-zh"') and '"score" -> "promoter"' in dot
    assert main(["dialplan", "graph", "trial-class-zh", "--format", "dot"]) == 0
    assert "digraph" in capsys.readouterr().out
    if shutil.which("dot") is None:
        assert main(["dialplan", "graph", "trial-class-zh", "--format", "svg"]) == 2
        assert "Graphviz" in capsys.readouterr().err


def test_schema_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "nodes" in schema["properties"] and "variants" in schema["properties"]
    assert main(["dialplan", "validate", *dialplans.names()]) == 0
    long_prompt = tmp_path / "long.yaml"
    long_prompt.write_text(
        "name: long\nlanguage: en-US\nstart: a\nnodes:\n  a: {type: hangup, say: " + "word " * 30 + "}\n",
        encoding="utf-8",
    )
    assert main(["dialplan", "validate", str(long_prompt)]) == 0  # a warning is not an error
    assert f"{long_prompt}:5:21: warning: prompt takes about 12 s" in capsys.readouterr().out


def test_inbox_exports_no_match_words_from_stored_outcomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "o.db"
    store = SqliteStore(db)
    now = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    for i, plan in enumerate(("trial-class-zh", "nps-survey-zh")):
        store.save_outcome_sync(
            CallOutcome(
                call_id=f"c{i}",
                to="1380000000",
                dialplan=plan,
                dialplan_version="2",
                disposition=Disposition.ANSWERED,
                started_at=now,
                ended_at=now,
                variables={
                    "no_match": [
                        {"node": "greet", "text": f"听不懂{i}", "intent": "other", "confidence": 0.5}
                    ]
                },
            )
        )
    store.close()
    rows = inbox_rows(
        SqliteStore(db)._load(SqliteStore(db)._run("SELECT body FROM outcomes")), "trial-class-zh"
    )
    assert [r["text"] for r in rows] == ["听不懂0"]
    assert main(["dialplan", "inbox", "trial-class-zh", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert (
        out.splitlines()[0].startswith("dialplan_version,node,text")
        and "听不懂0" in out
        and "听不懂1" not in out
    )
    assert main(["dialplan", "inbox", "trial-class-zh", "--db", str(db), "--format", "examples"]) == 0
    assert capsys.readouterr().out.strip() == '- "听不懂0"'


def test_designer_classifier_choice_matches_what_calls_use() -> None:
    """The chat's default is the classifier calls use; a test file's `classifier:` picks its own."""
    from models.nlu.rules import RulesClassifier
    from outcall.dialplan_tools import runtime_classifier

    assert isinstance(load_classifier("rules-v1"), RulesClassifier)
    assert isinstance(load_classifier("rules"), RulesClassifier)
    assert load_classifier("runtime") is runtime_classifier()  # loaded once per process
    assert load_classifier("e5-lora@20261123") is runtime_classifier()
