"""`outcall outbox list|retry` and `outcall outcomes export` on a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.outbox import Failure, RetryPolicy
from gateway.store.sqlite import SqliteStore
from outcall.cli import main

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "o.db"
    monkeypatch.setenv("OUTCALL_DB", str(path))
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("OUTCALL_MQTT_URL", raising=False)
    monkeypatch.delenv("OUTCALL_WEBHOOKS", raising=False)
    return path


def test_list_retry_and_export(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteStore(db)
    o = CallOutcome(
        call_id="c1", to="+8613812345678", disposition=Disposition.BUSY, started_at=T0, ended_at=T0
    )
    store.save_outcome_sync(o, sinks=["webhook:crm"])
    [item] = store.outbox_claim_sync(10)
    store.outbox_settle_sync([], [Failure(item.id, "HTTP 410 gone", permanent=True)], RetryPolicy())
    assert main(["outbox", "list", "--state", "dead", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["outcome_id"] == o.outcome_id and row["last_error"] == "HTTP 410 gone"
    assert main(["outbox", "retry"]) == 2
    assert "needs row ids or --dead" in capsys.readouterr().err
    assert main(["outbox", "retry", "--dead"]) == 0
    assert "1 row(s) due again" in capsys.readouterr().out
    assert store.outbox_counts_sync() == {"pending": 1, "delivered": 0, "dead": 0}
    out = tmp_path / "x.csv"
    assert main(["outcomes", "export", "--format", "csv", "--lang", "en", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8-sig")
    assert "+86138****5678" in text and "+8613812345678" not in text


def test_webhooks_from_env_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from outcall.settings import load_settings

    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv(
        "OUTCALL_WEBHOOKS",
        '[{"url": "http://127.0.0.1:9/h", "name": "crm", "secret_env": "CRM_SECRET",'
        ' "filters": {"grades": ["A", "B"]}}]',
    )
    [hook] = load_settings().webhooks
    assert hook.sink_name == "webhook:crm" and hook.filters.grades == ["A", "B"]


def test_webhooks_from_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from outcall.settings import load_settings

    conf = tmp_path / "outcall.toml"
    conf.write_text(
        '[[webhooks]]\nurl = "https://crm.example/hook"\nsecret = "abc"\n'
        '[webhooks.filters]\ndispositions = ["answered"]\n'
    )
    monkeypatch.setenv("OUTCALL_CONFIG", str(conf))
    monkeypatch.delenv("OUTCALL_WEBHOOKS", raising=False)
    [hook] = load_settings().webhooks
    assert hook.filters.dispositions == ["answered"]
    assert hook.secret is not None and hook.secret.get_secret_value() == "abc"


async def test_a_broker_that_is_down_never_fails_the_call(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from outcall.delivery import open_delivery
    from outcall.settings import load_settings

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OUTCALL_MQTT_URL", f"mqtt://127.0.0.1:{port}")
    store = SqliteStore(db)
    delivery = await open_delivery(load_settings(), store, publish_timeout_s=0.2)
    o = CallOutcome(
        call_id="c1", to="+8613812345678", disposition=Disposition.BUSY, started_at=T0, ended_at=T0
    )
    await store.save_outcome(o)  # as place_one_call does
    await delivery.flush(within_s=2.0)
    await delivery.close()
    [row] = store.outbox_list_sync(state="pending")
    assert row.sink == "mqtt" and row.attempts == 1 and "unreachable" in (row.last_error or "")
