"""The outbox on both backends: enqueued in the outcome's transaction, claimed once, settled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.outbox import Failure, OutboxStore, RetryPolicy
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore | PostgresStore]:
    s = (
        SqliteStore(tmp_path / "o.db")
        if request.param == "sqlite"
        else PostgresStore(request.getfixturevalue("pg_db"))
    )
    yield s
    s.close()


def test_enqueue_claim_settle(store: OutboxStore) -> None:
    assert isinstance(store, SqliteStore | PostgresStore)
    o = CallOutcome(
        call_id="c1", to="+8613800000000", disposition=Disposition.BUSY, started_at=T0, ended_at=T0
    )
    store.save_outcome_sync(o, sinks=["mqtt", "webhook:crm"])
    store.save_outcome_sync(o, sinks=["mqtt", "webhook:crm"])  # saved twice: still one row per sink
    now = time.time() + 10
    items = store.outbox_claim_sync(10, now=now)
    assert sorted(i.sink for i in items) == ["mqtt", "webhook:crm"]
    assert all(i.payload["outcome_id"] == o.outcome_id for i in items)
    assert store.outbox_claim_sync(10, now=now) == [], "claimed rows are leased"
    mqtt = next(i for i in items if i.sink == "mqtt")
    hook = next(i for i in items if i.sink != "mqtt")
    store.outbox_settle_sync([mqtt.id], [Failure(hook.id, "HTTP 404", permanent=True)], RetryPolicy())
    assert store.outbox_counts_sync() == {"pending": 0, "delivered": 1, "dead": 1}
    assert [x.outcome_id for x in store.iter_outcomes_sync()] == [o.outcome_id]
