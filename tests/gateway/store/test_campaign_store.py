"""Campaign persistence against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.campaign.contacts import Contact
from engine.campaign.policy import Action, Decision
from engine.campaign.scheduler import CampaignConfig, CampaignStatus
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.campaigns import CampaignStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC).timestamp()


def make(kind: str, where: str, node: str = "n1", lease_s: float = 300.0) -> CampaignStore:
    if kind == "sqlite":
        return SqliteStore(where, node=node, lease_s=lease_s)
    return PostgresStore(where, node=node, lease_s=lease_s)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "o.db")
    else:
        yield "postgres", request.getfixturevalue("pg_db")


def running(store: CampaignStore, name: str, **kw: object) -> None:
    store.create_campaign_sync(CampaignConfig(name=name, dialplan="trial-class-zh", **kw), now=T0)
    store.set_status_sync(name, CampaignStatus.RUNNING)


def contacts(campaign: str, n: int, start: int = 0) -> list[Contact]:
    return [Contact(campaign=campaign, phone=f"+86138{i:08d}") for i in range(start, start + n)]


def outcome(phone: str, disp: Disposition, at: float, tags: list[str] | None = None) -> CallOutcome:
    t = datetime.fromtimestamp(at, UTC)
    return CallOutcome(
        call_id=f"c{phone}{at}", to=phone, disposition=disp, started_at=t, ended_at=t, tags=tags or []
    )


def test_add_dedupes_against_campaign_and_claims_in_priority_order(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    assert s.add_contacts_sync("a", contacts("a", 5), now=T0) == (5, 0)
    assert s.add_contacts_sync("a", contacts("a", 3, start=3), now=T0) == (1, 2)
    s.add_contacts_sync("a", [Contact(campaign="a", phone="+8613900000000", priority=100)], now=T0 + 5)
    assert s.claim_sync("a", 1, T0 + 1) != []  # the priority contact is not due yet
    got = s.claim_sync("a", 10, T0 + 10)
    assert got[0].contact.phone == "+8613900000000"
    assert len(got) == 6
    assert s.claim_sync("a", 10, T0 + 10) == []
    assert s.contact_states_sync("a") == {"claimed": 7}


def test_paused_campaign_claims_nothing(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    s.add_contacts_sync("a", contacts("a", 3), now=T0)
    s.set_status_sync("a", CampaignStatus.PAUSED)
    assert s.claim_sync("a", 10, T0) == []


def test_concurrent_nodes_never_claim_one_number_twice(where: tuple[str, str]) -> None:
    kind, url = where
    s0 = make(kind, url)
    for name in ("a", "b"):
        running(s0, name)
        s0.add_contacts_sync(name, contacts(name, 200), now=T0)  # the same 200 numbers in both campaigns
    nodes = [make(kind, url, node=f"n{i}") for i in range(4)]
    claimed: list[str] = []
    lock = threading.Lock()

    def work(st: CampaignStore, campaign: str) -> None:
        for _ in range(40):
            got = st.claim_sync(campaign, 7, T0 + 1)
            with lock:
                claimed.extend(c.contact.phone for c in got)

    threads = [threading.Thread(target=work, args=(st, "ab"[i % 2])) for i, st in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claimed) == 200  # every number once, whichever campaign got it
    assert len(set(claimed)) == 200
    assert len(s0.active_claims_sync()) == 200


def test_complete_retry_infra_dnc_and_frequency_cap(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    running(s, "b")
    s.add_contacts_sync("a", contacts("a", 3), now=T0)
    s.add_contacts_sync("b", contacts("b", 3), now=T0)
    c0, c1, c2 = s.claim_sync("a", 3, T0)
    # busy -> retry in 30 min, consumes
    retry_at = datetime.fromtimestamp(T0 + 1800, UTC)
    s.complete_sync(
        c0, outcome(c0.contact.phone, Disposition.BUSY, T0 + 10), Decision(Action.RETRY, retry_at)
    )
    # infrastructure -> retry, no attempt consumed
    s.complete_sync(
        c1,
        outcome(c1.contact.phone, Disposition.FAILED, T0 + 10),
        Decision(Action.RETRY, retry_at, consumes_attempt=False),
    )
    # answered + stop_calling -> global DNC
    s.complete_sync(
        c2,
        outcome(c2.contact.phone, Disposition.ANSWERED, T0 + 60, ["dnc"]),
        Decision(Action.DNC, add_dnc=True),
    )
    assert s.is_dnc_sync(c2.contact.phone, "b")
    rows = {r["phone"]: r for r in s.iter_contacts_sync("a")}
    assert rows[c0.contact.phone]["attempts"] == 1 and rows[c0.contact.phone]["state"] == "pending"
    assert rows[c1.contact.phone]["attempts"] == 0
    assert rows[c2.contact.phone]["state"] == "dnc"
    assert s.claim_sync("a", 5, T0 + 100) == []  # retries not due yet
    assert {c.contact.phone for c in s.claim_sync("a", 5, T0 + 1800)} == {c0.contact.phone, c1.contact.phone}
    # campaign b: c2's number is DNC now
    got_b = s.claim_sync("b", 5, T0 + 1900)
    assert c2.contact.phone not in {c.contact.phone for c in got_b}
    assert s.contact_states_sync("b").get("dnc") == 1
    # the outcome row was written in the same transaction and is readable via the outcomes API
    assert s.campaign_stats_sync("a")["dispositions"] == {"busy": 1, "failed": 1, "answered": 1}


def test_frequency_cap_across_campaigns(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    running(s, "b")
    s.add_contacts_sync("a", contacts("a", 1), now=T0)
    s.add_contacts_sync("b", contacts("b", 1), now=T0)
    (c,) = s.claim_sync("a", 1, T0)
    s.complete_sync(c, outcome(c.contact.phone, Disposition.ANSWERED, T0 + 30), Decision(Action.DONE))
    assert s.claim_sync("b", 1, T0 + 60) == []  # answered 1 min ago in campaign a: capped for 5 days
    assert s.claim_sync("b", 1, T0 + 4 * 86400) == []
    assert len(s.claim_sync("b", 1, T0 + 30 + 5 * 86400 + 1)) == 1


def test_expired_lease_requeues_without_consuming_attempt(where: tuple[str, str]) -> None:
    kind, url = where
    a = make(kind, url, node="dead", lease_s=60)
    running(a, "a")
    a.add_contacts_sync("a", contacts("a", 2), now=T0)
    got = a.claim_sync("a", 2, T0)
    assert len(got) == 2
    b = make(kind, url, node="alive", lease_s=60)
    assert b.claim_sync("a", 2, T0 + 30) == []  # leases still valid
    assert b.claim_sync("a", 2, T0 + 61) == []  # expired: requeued 30 min out, not redialed at once
    att = b.attempts_sync("a")
    assert [x["reason"] for x in att] == ["lease expired", "lease expired"]
    assert all(r["attempts"] == 0 and r["state"] == "pending" for r in b.iter_contacts_sync("a"))
    assert len(b.claim_sync("a", 2, T0 + 61 + 1800)) == 2


KILL_SCRIPT = """
import sys, time
from gateway.store.sqlite import SqliteStore
s = SqliteStore(sys.argv[1], node="victim", lease_s=60)
got = s.claim_sync("a", 3, float(sys.argv[2]))
print(",".join(c.contact.phone for c in got), flush=True)
time.sleep(60)
"""


def test_kill_9_mid_call_then_restart_sqlite(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    s = SqliteStore(db)
    running(s, "a")
    s.add_contacts_sync("a", contacts("a", 5), now=T0)
    s.close()
    p = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, db, str(T0)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert p.stdout is not None
    victim = set(p.stdout.readline().strip().split(","))
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    assert len(victim) == 3
    s2 = SqliteStore(db, node="restarted")
    others = {c.contact.phone for c in s2.claim_sync("a", 5, T0 + 1)}
    assert len(others) == 2 and not (others & victim)  # the victim's numbers are still leased
    assert s2.claim_sync("a", 5, T0 + 120) == []  # lease expired: resolved, but due only later
    again = {c.contact.phone for c in s2.claim_sync("a", 5, T0 + 120 + 1800)}
    assert again == victim


async def test_outcomes_api_still_works(where: tuple[str, str]) -> None:
    s = make(*where)
    o = outcome("+8613800000000", Disposition.ANSWERED, T0)
    o.campaign = "x"
    await s.save_outcome(o)  # type: ignore[attr-defined]
    got = await s.get_outcome(o.call_id)  # type: ignore[attr-defined]
    assert got is not None and got.outcome_id == o.outcome_id
    assert [x.call_id for x in await s.list_outcomes(campaign="x")] == [o.call_id]  # type: ignore[attr-defined]


def test_stop_sets_pending_to_stopped(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    s.add_contacts_sync("a", contacts("a", 3), now=T0)
    s.set_status_sync("a", CampaignStatus.STOPPED)
    assert s.contact_states_sync("a") == {"stopped": 3}
    assert s.get_campaign_sync("a")[1] is CampaignStatus.STOPPED


def test_caller_id_health_survives_a_restart(where: tuple[str, str]) -> None:
    """A quarantined caller ID stays quarantined for a new process (SQLite and Postgres)."""
    import asyncio

    from engine.campaign.callerid import CallerIdPolicy
    from engine.trunk import Trunk
    from outcall.callerids import CallerIds

    trunk = Trunk(name="t1", proxy="127.0.0.1:5060", caller_ids=["01062120001"])
    pol = CallerIdPolicy(min_attempts=5)

    async def run() -> None:
        first = CallerIds([trunk], pol, make(*where))
        for i in range(5):
            cid = await first.pick("t1", f"+86138{i:08d}", callee_area="010")
            assert isinstance(cid, str)
            o = outcome(f"+86138{i:08d}", Disposition.NO_ANSWER, T0).model_copy(update={"caller_id": cid})
            await first.record("t1", o)
        second = CallerIds([trunk], pol, make(*where))  # a restarted process
        (h,) = second.health("t1")["t1"]
        assert h.state == "quarantined" and h.attempts_today == 5 and h.window_attempts == 5
        assert await second.pick("t1", "+8613800000009") is None  # no healthy number: not dialed

    asyncio.run(run())


def test_spend_accumulates_with_each_completion(where: tuple[str, str]) -> None:
    s = make(*where)
    running(s, "a")
    running(s, "b")
    s.add_contacts_sync("a", contacts("a", 3), now=T0)
    s.add_contacts_sync("b", contacts("b", 1, start=10), now=T0)
    for camp in ("a", "b"):
        for c in s.claim_sync(camp, 10, T0 + 1):
            o = outcome(c.contact.phone, Disposition.ANSWERED, T0 + 60).model_copy(
                update={"billed_s": 60, "cost": 0.08}
            )
            s.complete_sync(c, o, Decision(Action.DONE))
    assert s.spent_sync("a") == pytest.approx(0.24)
    assert s.spent_sync("b") == pytest.approx(0.08)
    assert s.spent_sync("nobody") == 0.0
    assert make(*where).spent_sync("a") == pytest.approx(0.24)  # survives a restart
