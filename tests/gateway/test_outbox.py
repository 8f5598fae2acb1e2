"""The outbox: enqueued atomically with the outcome, drained with exponential backoff (virtual clock),
dead-lettered after N attempts, retried by operators, idempotent per (outcome, sink)."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.delivery import DeliveryError, OutboxDeliverer
from gateway.store.outbox import RetryPolicy
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def outcome(i: int, grade: str = "B", campaign: str | None = "spring") -> CallOutcome:
    return CallOutcome(
        call_id=f"call-{i}",
        campaign=campaign,
        to=f"+86138{i:08d}",
        disposition=Disposition.ANSWERED,
        grade=grade,
        started_at=T0,
        ended_at=T0,
    )


class FakeSink:
    """Fails the first `fail` sends (or always, permanently), records what it delivered."""

    def __init__(
        self, name: str = "fake", *, fail: int = 0, permanent: bool = False, grades: str = ""
    ) -> None:
        self._name = name
        self.fail = fail
        self.permanent = permanent
        self.grades = grades
        self.sent: list[str] = []
        self.tries = 0

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, outcome: CallOutcome) -> bool:
        return not self.grades or outcome.grade in self.grades

    async def deliver(self, outcome: object) -> None:
        assert isinstance(outcome, dict)
        self.tries += 1
        if self.permanent:
            raise DeliveryError("HTTP 400 bad request", permanent=True)
        if self.fail > 0:
            self.fail -= 1
            raise DeliveryError("connection refused")
        self.sent.append(outcome["outcome_id"])

    async def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "o.db")
    s.inline = True  # deterministic with the virtual clock
    return s


def test_outcome_and_outbox_rows_commit_together_or_not_at_all(store: SqliteStore) -> None:
    a, b = FakeSink("a"), FakeSink("b", grades="A")
    first = outcome(1, grade="B")
    store.save_outcome_sync(first, sinks=[a, b, "extra"])
    rows = store.outbox_list_sync()
    assert sorted(r.sink for r in rows) == ["a", "extra"], "b's filter (grade A only) refused a B"
    # the same outcome saved again does not enqueue a second delivery
    store.save_outcome_sync(first, sinks=[a, "extra"])
    assert len(store.outbox_list_sync()) == 2

    class Boom:
        name = "boom"

        def accepts(self, outcome: CallOutcome) -> bool:
            raise RuntimeError("filter crashed")

    with pytest.raises(RuntimeError):
        store.save_outcome_sync(outcome(2), sinks=["a", Boom()])
    assert store._run("SELECT count(*) FROM outcomes WHERE call_id='call-2'") == [(0,)]
    assert len(store.outbox_list_sync()) == 2, "the failed transaction left no outbox row behind"


def test_default_sinks_apply_to_every_save_path(store: SqliteStore) -> None:
    store.outbox_sinks = ["mqtt"]
    store.save_outcome_sync(outcome(1))
    assert [r.sink for r in store.outbox_list_sync()] == ["mqtt"]
    store.save_outcome_sync(outcome(2), sinks=[])  # explicit: none
    assert len(store.outbox_list_sync()) == 1


async def test_backoff_grows_exponentially_with_jitter_then_delivers(store: SqliteStore) -> None:
    clock = VirtualClock(T0)
    store.outbox_clock = lambda: clock.now().timestamp()
    sink = FakeSink(fail=4)
    policy = RetryPolicy(base_s=1.0, factor=2.0, max_s=60.0, jitter=0.5, max_attempts=10)
    d = OutboxDeliverer(store, [sink], policy=policy, clock=clock, rng=random.Random(7))
    o = outcome(1)
    store.save_outcome_sync(o, sinks=[sink])
    waits = []
    for attempt in range(1, 5):
        res = await d.drain_once()
        assert (res.claimed, res.failed) == (1, 1)
        [row] = store.outbox_list_sync()
        wait = row.next_at - clock.now().timestamp()
        nominal = 2.0 ** (attempt - 1)
        assert nominal * 0.5 <= wait <= nominal, (attempt, wait)
        assert row.attempts == attempt and row.last_error == "connection refused"
        assert (await d.drain_once()).claimed == 0, "not due before its backoff"
        waits.append(wait)
        await clock.advance(wait + 0.001)
    assert waits[3] > waits[0]
    res = await d.drain_once()
    assert (res.claimed, res.delivered) == (1, 1)
    assert sink.sent == [o.outcome_id]
    assert store.outbox_counts_sync() == {"pending": 0, "delivered": 1, "dead": 0}
    assert (await d.drain_once()).claimed == 0, "a delivered row is never sent again"


async def test_dead_letter_after_max_attempts_and_operator_retry(store: SqliteStore) -> None:
    clock = VirtualClock(T0)
    store.outbox_clock = lambda: clock.now().timestamp()
    sink = FakeSink(fail=10**6)
    policy = RetryPolicy(base_s=1.0, max_s=4.0, jitter=0.0, max_attempts=3)
    d = OutboxDeliverer(store, [sink], policy=policy, clock=clock)
    store.save_outcome_sync(outcome(1), sinks=[sink])
    for _ in range(3):
        await d.drain_once()
        await clock.advance(10)
    [row] = store.outbox_list_sync(state="dead")
    assert row.attempts == 3 and sink.tries == 3
    await clock.advance(3600)
    assert (await d.drain_once()).claimed == 0, "dead rows are not retried by themselves"
    sink.fail = 0
    assert store.outbox_retry_sync(dead=True) == 1
    assert (await d.drain_once()).delivered == 1
    assert store.outbox_counts_sync()["delivered"] == 1
    assert store.outbox_retry_sync([row.id]) == 0, "retrying a delivered row would duplicate it"


async def test_permanent_rejection_goes_straight_to_dead(store: SqliteStore) -> None:
    sink = FakeSink(permanent=True)
    d = OutboxDeliverer(store, [sink])
    store.save_outcome_sync(outcome(1), sinks=[sink])
    res = await d.drain_once()
    assert (res.failed, res.dead) == (1, 1)
    [row] = store.outbox_list_sync(state="dead")
    assert row.attempts == 1 and "400" in (row.last_error or "")


async def test_a_crashed_deliverer_s_claim_expires_and_the_row_is_sent_again(store: SqliteStore) -> None:
    clock = VirtualClock(T0)
    store.outbox_clock = lambda: clock.now().timestamp()
    store.save_outcome_sync(outcome(1), sinks=["fake"])
    now = clock.now().timestamp()
    assert len(store.outbox_claim_sync(10, now=now, lease_s=60)) == 1  # then the process dies
    assert store.outbox_claim_sync(10, now=now + 59, lease_s=60) == []
    sink = FakeSink()
    await clock.advance(61)
    d = OutboxDeliverer(store, [sink], clock=clock)
    assert (await d.drain_once()).delivered == 1


async def test_rows_for_sinks_this_process_lacks_are_left_alone(store: SqliteStore) -> None:
    store.save_outcome_sync(outcome(1), sinks=["mqtt", "webhook:crm"])
    sink = FakeSink("mqtt")
    d = OutboxDeliverer(store, [sink])
    assert (await d.drain()).delivered == 1
    assert [r.sink for r in store.outbox_list_sync(state="pending")] == ["webhook:crm"]


def test_outbox_table_rejects_a_second_row_per_outcome_and_sink(store: SqliteStore) -> None:
    store.save_outcome_sync(outcome(1), sinks=["mqtt"])
    with pytest.raises(sqlite3.IntegrityError):
        store._run(
            "INSERT INTO outbox(outcome_id, sink, payload, next_at, created_at) "
            "SELECT outcome_id, sink, payload, 0, 0 FROM outbox"
        )
