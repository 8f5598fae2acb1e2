"""Tokens, audit and the API's read queries on both stores (real SQLite file, real PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.campaign.scheduler import CampaignConfig
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.auth import AuthStore
from gateway.store.campaigns import CampaignStore
from gateway.store.postgres import PostgresStore
from gateway.store.reports import CallFilter, Reports, two_proportion_p
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CampaignStore]:
    s: SqliteStore | PostgresStore
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "a.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_db"))
    yield s
    s.close()


def test_tokens_hashed_verify_revoke_and_audit(store: CampaignStore) -> None:
    auth = AuthStore(store)
    AuthStore(store)  # idempotent schema
    tid, token = auth.create_token("manager", "crm")
    with store._tx(write=False) as cur:
        cur.execute("SELECT token_sha256 FROM api_tokens")
        assert cur.fetchone()[0] == hashlib.sha256(token.encode()).hexdigest()
    info = auth.verify(token)
    assert info is not None and (info.id, info.name, info.role) == (tid, "crm", "manager")
    assert auth.verify(token + "x") is None
    auth.touch(tid)
    assert auth.list_tokens()[0].last_used_at is not None
    assert auth.revoke_token(tid) and not auth.revoke_token(tid)
    assert auth.verify(token) is None
    with pytest.raises(ValueError, match="unknown role"):
        auth.create_token("root")
    for i in range(3):
        auth.audit("crm", "manager", "dnc.add", f"+86138000000{i}", {"i": i}, now=T0.timestamp() + i)
    auth.audit("ops", "admin", "token.create", tid)
    rows, total = auth.list_audit(action="dnc.add", limit=2, offset=0)
    assert total == 3 and [r["detail"]["i"] for r in rows] == [2, 1]
    assert auth.list_audit(actor="ops", limit=10)[0][0]["target"] == tid


def test_reports_calls_filters_and_stats(store: CampaignStore) -> None:
    store.create_campaign_sync(CampaignConfig(name="a", dialplan="trial-class-zh"), now=T0.timestamp())
    for i, (disp, grade, plan) in enumerate(
        [
            (Disposition.ANSWERED, "A", "p1"),
            (Disposition.ANSWERED, "C", "p2"),
            (Disposition.BUSY, "E", "p1"),
            (Disposition.FAILED, "E", "p2"),
        ]
    ):
        start = T0 + timedelta(minutes=i)
        ans = disp is Disposition.ANSWERED
        store.save_outcome_sync(  # type: ignore[attr-defined]
            CallOutcome(
                call_id=f"c{i}",
                campaign="a",
                to=f"+8613800000{i:03d}",
                disposition=disp,
                grade=grade,
                dialplan=plan,
                started_at=start,
                answered_at=start if ans else None,
                ended_at=start + timedelta(seconds=30),
            )
        )
    rep = Reports(store)
    items, total = rep.calls(CallFilter(campaign="a"), limit=2, offset=0)
    assert total == 4 and [c["call_id"] for c in items] == ["c3", "c2"]
    assert (
        rep.calls(CallFilter(disposition="answered", since=T0 + timedelta(minutes=1)), limit=9, offset=0)[1]
        == 1
    )
    s = rep.stats(CallFilter(campaign="a"))
    assert (s["attempts"], s["answered"], s["connect_rate"]) == (3, 2, 0.6667)
    assert s["per_variant"]["p1"]["success"] == 1 and s["per_variant"]["p2"]["attempts"] == 1
    m = rep.metrics()
    assert ("a", "answered", "A", 1, 30.0) in m["calls"] and m["campaigns"] == {"draft": 1}
    camps, n = rep.campaigns(limit=10, offset=0)
    assert n == 1 and camps[0]["config"].name == "a"


def test_two_proportion_p() -> None:
    assert two_proportion_p(50, 100, 50, 100) == 1.0
    p = two_proportion_p(60, 100, 40, 100)
    assert p is not None and 0.004 < p < 0.006
    assert two_proportion_p(0, 0, 1, 2) is None
