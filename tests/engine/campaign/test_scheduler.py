import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.campaign.calendar import HolidayCalendar
from engine.campaign.contacts import Contact
from engine.campaign.scheduler import (
    AnswerRateModel,
    CampaignConfig,
    CampaignLoop,
    CampaignStatus,
    CircuitBreaker,
    Claim,
    MemoryQueue,
    Pacer,
    Seat,
)
from engine.clock import VirtualClock
from engine.dispositions import Disposition

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 Shanghai


@dataclass
class Out:
    disposition: Disposition
    ended_at: datetime
    tags: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


class FakeLine:
    """Callees that answer with probability p after ring_s, talk talk_s; infra failures on demand."""

    def __init__(self, clock: VirtualClock, p: float = 0.3, ring_s: float = 8, talk_s: float = 30) -> None:
        self.clock, self.p, self.ring_s, self.talk_s = clock, p, ring_s, talk_s
        self.rng = random.Random(7)
        self.fail = False
        self.live: set[str] = set()
        self.dialed: list[str] = []
        self.abandoned = 0

    async def __call__(self, claim: Claim, seat: Seat) -> Out:
        phone = claim.contact.phone
        assert phone not in self.live, f"{phone} dialed twice at once"
        self.live.add(phone)
        self.dialed.append(phone)
        try:
            if self.fail:
                await self.clock.sleep(0.5)
                return Out(Disposition.FAILED, self.clock.now())
            await self.clock.sleep(self.ring_s)
            if self.rng.random() >= self.p:
                return Out(Disposition.NO_ANSWER, self.clock.now())
            if not seat.answered():
                self.abandoned += 1
                return Out(Disposition.ANSWERED, self.clock.now(), tags=["abandoned"])
            await self.clock.sleep(self.talk_s)
            return Out(Disposition.ANSWERED, self.clock.now())
        finally:
            self.live.discard(phone)


def queue_with(n: int, **kw: Any) -> MemoryQueue:
    q = MemoryQueue()
    for i in range(n):
        q.add(Contact(campaign="c", phone=f"+86138{i:08d}", **kw))
    return q


def cfg(**kw: Any) -> CampaignConfig:
    return CampaignConfig(name="c", dialplan="trial-class-zh", **kw)


async def drive(loop: CampaignLoop, clock: VirtualClock, seconds: float) -> None:
    task = asyncio.create_task(loop.run())
    await clock.advance(seconds, step=0.2)
    loop.stop()
    await clock.advance(120, step=1)
    await asyncio.wait_for(task, 5)


async def test_never_more_answered_than_ai_capacity_and_no_double_dial() -> None:
    clock = VirtualClock(START)
    line = FakeLine(clock, p=0.5)
    q = queue_with(400)
    loop = CampaignLoop(
        cfg(ai_capacity=5, max_concurrency=40, calls_per_second=10),
        q,
        line,
        clock=clock,
        holidays=HolidayCalendar(),
    )
    await drive(loop, clock, 600)
    s = loop.stats
    assert s.dialed > 100
    assert s.max_answered_concurrent <= 5
    assert s.max_answered_concurrent == 5  # and the capacity is actually used
    assert s.max_in_flight <= 40
    assert not q.leases


async def test_predictive_pacing_overdials_by_answer_rate() -> None:
    clock = VirtualClock(START)
    line = FakeLine(clock, p=0.25, ring_s=20)
    loop = CampaignLoop(
        cfg(ai_capacity=4, max_concurrency=100, calls_per_second=50, initial_answer_rate=0.25),
        queue_with(500),
        line,
        clock=clock,
        holidays=HolidayCalendar(),
    )
    task = asyncio.create_task(loop.run())
    await clock.advance(5, step=0.2)
    assert loop.in_flight == 16  # 4 seats / 0.25 answer rate, nobody answered yet
    loop.stop()
    await clock.advance(200, step=1)
    await asyncio.wait_for(task, 5)
    strict = CampaignLoop(
        cfg(ai_capacity=4, pacing="strict", calls_per_second=50),
        queue_with(50),
        line,
        clock=clock,
        holidays=HolidayCalendar(),
    )
    assert strict.budget() == 4


def test_pacer_caps() -> None:
    p = Pacer(cps=2.0, tokens=2.0, at=0.0)
    common: dict[str, Any] = {"answered": 0, "dialing": 0, "answer_rate": 0.1, "strict": False}
    assert p.budget(now=0, ai_capacity=10, max_concurrency=1000, trunk_free=None, **common) == 2  # CPS
    p.spend(2)
    assert p.budget(now=0.25, ai_capacity=10, max_concurrency=1000, trunk_free=None, **common) == 0
    assert p.budget(now=0.5, ai_capacity=10, max_concurrency=1000, trunk_free=None, **common) == 1
    fast = Pacer(cps=1000.0, tokens=1000.0)
    assert fast.budget(now=0, ai_capacity=10, max_concurrency=30, trunk_free=None, **common) == 30
    assert fast.budget(now=0, ai_capacity=10, max_concurrency=1000, trunk_free=7, **common) == 7
    assert fast.budget(now=0, ai_capacity=10, max_concurrency=10_000, trunk_free=None, **common) == 100
    busy: dict[str, Any] = {"answered": 8, "dialing": 4, "answer_rate": 0.5, "strict": False}
    assert fast.budget(now=0, ai_capacity=10, max_concurrency=1000, trunk_free=None, **busy) == 0


def test_answer_rate_learned_per_hour() -> None:
    m = AnswerRateModel(prior=0.3, weight=10)
    for _ in range(90):
        m.observe(10, False)
    for _ in range(10):
        m.observe(10, True)
    assert abs(m.predict(10) - (10 + 3) / 110) < 1e-9
    assert m.predict(11) == 0.3
    for _ in range(1000):
        m.observe(3, False)
    assert m.predict(3) == 0.05


def test_circuit_breaker() -> None:
    b = CircuitBreaker()
    assert not any(b.record(t, t % 2 == 0) for t in range(4))
    assert b.record(4, True)  # 3 of 5 failed
    b2 = CircuitBreaker()
    for t in range(0, 500, 100):  # spread over more than 2 min: never 5 in the window
        assert not b2.record(t, True)


async def test_circuit_breaker_pauses_campaign_and_alerts() -> None:
    clock = VirtualClock(START)
    line = FakeLine(clock)
    line.fail = True
    alerts: list[Any] = []
    q = queue_with(50)
    loop = CampaignLoop(
        cfg(calls_per_second=2), q, line, clock=clock, holidays=HolidayCalendar(), on_event=alerts.append
    )
    task = asyncio.create_task(loop.run())
    await clock.advance(30, step=0.2)
    assert loop.status is CampaignStatus.PAUSED
    assert [a.kind for a in alerts] == ["circuit_breaker"]
    dialed = len(line.dialed)
    assert 5 <= dialed <= 8
    # infrastructure failures consumed no attempts; the contacts are re-queued
    assert all(c.attempts == 0 for c in q.contacts.values())
    await clock.advance(60, step=0.5)
    assert len(line.dialed) == dialed  # paused: nothing more
    line.fail = False
    loop.resume()
    await clock.advance(5, step=0.2)
    assert len(line.dialed) > dialed
    loop.stop()
    await clock.advance(100, step=1)
    await asyncio.wait_for(task, 5)


async def test_speed_to_lead_first_and_consent_and_window() -> None:
    clock = VirtualClock(START)
    line = FakeLine(clock, p=0.0, ring_s=1)
    q = queue_with(20)
    q.add(Contact(campaign="c", phone="+8613900000001", priority=100))
    q.add(Contact(campaign="c", phone="+8613900000002", consent=False))
    q.add(Contact(campaign="c", phone="+8613900000003", consent=True, timezone="America/New_York"))
    loop = CampaignLoop(
        cfg(calls_per_second=1, consent_required=True), q, line, clock=clock, holidays=HolidayCalendar()
    )
    await loop.step()
    assert line.dialed == []  # first claim: speed-to-lead contact has no consent -> released
    # give everyone consent except one
    for cid, c in q.contacts.items():
        if c.phone != "+8613900000002":
            q.contacts[cid] = c.model_copy(update={"consent": True})
    q2 = MemoryQueue()
    for c in q.contacts.values():
        q2.add(c.model_copy(update={"id": None}))
    loop2 = CampaignLoop(
        cfg(calls_per_second=50, max_concurrency=50, consent_required=True),
        q2,
        line,
        clock=clock,
        holidays=HolidayCalendar(),
    )
    await loop2.step()
    await clock.advance(0)
    assert line.dialed[0] == "+8613900000001"
    assert "+8613900000002" not in line.dialed
    assert "+8613900000003" not in line.dialed  # 21:00 in New York: outside the window
    ny = next(i for i, c in q2.contacts.items() if c.phone == "+8613900000003")
    assert q2.state[ny] == "pending"
    no = next(i for i, c in q2.contacts.items() if c.phone == "+8613900000002")
    assert q2.state[no] == "no_consent"
    await clock.advance(30, step=1)


async def test_retries_follow_policy_until_exhausted_and_dnc() -> None:
    clock = VirtualClock(START)
    line = FakeLine(clock, p=0.0, ring_s=5)
    q = queue_with(3)
    loop = CampaignLoop(cfg(calls_per_second=5), q, line, clock=clock, holidays=HolidayCalendar())
    task = asyncio.create_task(loop.run())
    await clock.advance(5 * 86400, step=600)
    loop.stop()
    await clock.advance(60, step=1)
    await asyncio.wait_for(task, 5)
    per = {p: line.dialed.count(p) for p in set(line.dialed)}
    assert all(n == 4 for n in per.values()), per  # 4 attempts fit in 3 days (day 0, noon, evening, morning)
    assert set(q.state.values()) == {"exhausted"}
    assert clock.now() - START > timedelta(days=3)


@dataclass
class Costed(Out):
    cost: float = 0.0


async def test_budget_cap_pauses_the_campaign_with_an_alert() -> None:
    """Every answered call costs 0.10; a 1.00 budget (0.30 already spent) pauses after ~7 more calls."""
    clock = VirtualClock(START)
    dialed: list[str] = []

    async def line(claim: Claim, seat: Seat) -> Costed:
        dialed.append(claim.contact.phone)
        await clock.sleep(2)
        seat.answered()
        await clock.sleep(10)
        return Costed(Disposition.ANSWERED, clock.now(), cost=0.10)

    alerts: list[Any] = []
    loop = CampaignLoop(
        cfg(budget=1.0, max_concurrency=1, ai_capacity=1, pacing="strict"),
        queue_with(50),
        line,
        clock=clock,
        holidays=HolidayCalendar(),
        on_event=alerts.append,
        spent=0.30,
    )
    task = asyncio.create_task(loop.run())
    await clock.advance(600, step=0.5)
    assert loop.status is CampaignStatus.PAUSED
    assert [a.kind for a in alerts] == ["budget_reached"]
    assert len(dialed) == 7 and loop.spent == pytest.approx(1.0)
    loop.resume()  # resuming without a higher cap pauses again at once, dialing nothing
    await clock.advance(30, step=0.5)
    assert len(dialed) == 7 and loop.status is CampaignStatus.PAUSED
    loop.stop()
    await clock.advance(30, step=1)
    await asyncio.wait_for(task, 5)


def test_tariff_rounds_talk_time_up_per_increment() -> None:
    from engine.trunk import Tariff

    per_min = Tariff(increment_s=60, price_per_min=0.08)
    assert per_min.bill(0) == (0, 0.0)
    assert per_min.bill(0.4) == (60, 0.08)
    assert per_min.bill(60.0) == (60, 0.08)
    assert per_min.bill(61) == (120, 0.16)
    six = Tariff(increment_s=6, price_per_min=0.12)
    billed, cost = six.bill(13.2)
    assert billed == 18 and cost == pytest.approx(0.036)
