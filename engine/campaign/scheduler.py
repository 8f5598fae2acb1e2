"""The campaign loop: who is dialed when, how fast, and what happens after.

Pure asyncio over two ports: a `ContactQueue` (claims with leases, in gateway/store; `MemoryQueue` here
for tests and the benchmark) and a `Dialer` (one attempt; the runtime's run_call in production).

Pacing: dial budget = free AI capacity ÷ predicted answer rate (learned per campaign and local hour),
capped by max concurrency, calls per second and trunk channels. A call that answers takes an AI seat;
when none is free the dialer must abandon it (`Seat.answered()` returns False), so answered calls never
exceed AI capacity. `pacing="strict"` counts every call in flight as answered (no overdial at all): use it
with a dialer that cannot report the answer.

Circuit breaker: ≥ 50 % infrastructure failures among the last ≥ 5 attempts within 2 minutes pauses the
campaign and emits a `CampaignAlert`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.campaign.calendar import Calendar, CalendarStatus, CallingHours, HolidayCalendar
from engine.campaign.contacts import Contact, contact_timezone
from engine.campaign.policy import (
    Action,
    AttemptResult,
    Decision,
    FrequencyCap,
    Policy,
    RetryPolicy,
    is_answered,
)
from engine.clock import Clock
from engine.dispositions import INFRASTRUCTURE, Disposition

log = logging.getLogger("outcall.campaign")


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DONE = "done"


class CampaignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dialplan: str
    timezone: str = "Asia/Shanghai"
    trunk: str | None = None
    ai_capacity: int = Field(10, ge=1, description="concurrent conversations the models can hold")
    max_concurrency: int = Field(20, ge=1, description="calls in flight (dialing + answered)")
    calls_per_second: float = Field(5.0, gt=0)
    trunk_channels: int | None = Field(None, ge=1)
    pacing: Literal["predictive", "strict"] = "predictive"
    initial_answer_rate: float = Field(0.3, gt=0, le=1)
    consent_required: bool = False
    variants: dict[str, float] = Field(default_factory=dict, description="dialplan variant -> ratio")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    hours: CallingHours = Field(default_factory=CallingHours)
    frequency_cap: FrequencyCap = Field(default_factory=FrequencyCap)
    ring_timeout: float = 45.0
    record: bool = Field(False, description="record answered calls (stereo: callee left, robot right)")
    budget: float | None = Field(
        None, gt=0, description="spend cap in the trunk tariff's currency: reaching it pauses the campaign"
    )


@dataclass
class Claim:
    """A contact claimed for one attempt (the store holds a lease on its phone number)."""

    attempt_id: int
    contact: Contact
    attempt_no: int
    lease_until: float = 0.0


class CampaignAlert(BaseModel):
    type: Literal["campaign_alert"] = "campaign_alert"
    campaign: str
    kind: Literal["circuit_breaker", "calendar_expired", "calendar_expiring", "budget_reached"]
    message: str
    at: datetime


class ContactQueue(Protocol):
    async def claim(self, campaign: str, n: int, now: datetime) -> list[Claim]:
        """Atomically claim up to n due contacts (DNC and frequency cap applied inside the claim)."""
        ...

    async def complete(self, claim: Claim, outcome: Any, decision: Decision) -> None:
        """Record the attempt's outcome and the policy decision; release the number's lease."""
        ...

    async def release(self, claim: Claim, at: datetime | None, reason: str) -> None:
        """Give a claim back without an attempt (not dialed): due again at `at` (None: closed)."""
        ...

    async def next_due(self, campaign: str) -> datetime | None:
        """When the next pending contact is due (None: none pending); lets an idle loop sleep."""
        ...


class Seat:
    """Handed to the dialer: call `answered()` when the callee answers; False means no AI seat is free
    and the call must be abandoned politely."""

    def __init__(self, loop: CampaignLoop) -> None:
        self._loop = loop
        self.holding = False

    def answered(self) -> bool:
        return self._loop._take_seat(self)


#: places one attempt and returns its CallOutcome (disposition, tags, variables, ended_at)
Dialer = Callable[[Claim, Seat], Awaitable[Any]]


class AnswerRateModel:
    """Answer rate per local hour of day: a Beta posterior around a prior, so it learns fast but is
    never 0 (which would stop pacing) or wild after a handful of calls."""

    def __init__(self, prior: float = 0.3, weight: float = 10.0, floor: float = 0.05) -> None:
        self.prior, self.weight, self.floor = prior, weight, floor
        self._n: dict[int, list[float]] = {}

    def observe(self, hour: int, answered: bool) -> None:
        c = self._n.setdefault(hour, [0.0, 0.0])
        c[0] += 1.0 if answered else 0.0
        c[1] += 1.0

    def predict(self, hour: int) -> float:
        a, n = self._n.get(hour, [0.0, 0.0])
        return max(self.floor, min(1.0, (a + self.prior * self.weight) / (n + self.weight)))


class CircuitBreaker:
    def __init__(self, window_s: float = 120.0, min_attempts: int = 5, ratio: float = 0.5) -> None:
        self.window_s, self.min_attempts, self.ratio = window_s, min_attempts, ratio
        self._events: deque[tuple[float, bool]] = deque()

    def record(self, t: float, infrastructure: bool) -> bool:
        """Record an attempt; True when the breaker trips (and then it resets)."""
        self._events.append((t, infrastructure))
        while self._events and self._events[0][0] < t - self.window_s:
            self._events.popleft()
        n = len(self._events)
        bad = sum(1 for _, b in self._events if b)
        if n >= self.min_attempts and bad / n >= self.ratio:
            self._events.clear()
            return True
        return False


@dataclass
class Pacer:
    """Token bucket for calls per second plus the budget formula."""

    cps: float
    tokens: float = 1.0
    at: float = 0.0

    def refill(self, now: float) -> None:
        self.tokens = min(max(1.0, self.cps), self.tokens + (now - self.at) * self.cps)
        self.at = now

    def budget(
        self,
        *,
        now: float,
        answered: int,
        dialing: int,
        answer_rate: float,
        ai_capacity: int,
        max_concurrency: int,
        trunk_free: int | None,
        strict: bool,
    ) -> int:
        self.refill(now)
        in_flight = answered + dialing
        if strict:
            ai = ai_capacity - in_flight
        else:
            free_ai = ai_capacity - answered - dialing * answer_rate
            ai = int(free_ai / answer_rate) if free_ai > 0 else 0
        caps = [ai, max_concurrency - in_flight, int(self.tokens)]
        if trunk_free is not None:
            caps.append(trunk_free)
        return max(0, min(caps))

    def spend(self, n: int) -> None:
        self.tokens -= n


@dataclass
class LoopStats:
    dialed: int = 0
    answered: int = 0
    abandoned: int = 0
    infra_failures: int = 0
    released: int = 0
    max_answered_concurrent: int = 0
    max_in_flight: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)
    by_variant: dict[str, list[int]] = field(default_factory=dict)  # variant -> [attempts, answered]


class CampaignLoop:
    def __init__(
        self,
        config: CampaignConfig,
        queue: ContactQueue,
        dialer: Dialer,
        *,
        clock: Clock,
        holidays: HolidayCalendar | None = None,
        on_event: Callable[[CampaignAlert], None] | None = None,
        trunk_free: Callable[[], int | None] | None = None,
        tick_s: float = 0.2,
        max_idle_s: float = 60.0,
        spent: float = 0.0,
    ) -> None:
        self.config = config
        #: what this campaign's calls have cost so far (the store's running total at start)
        self.spent = spent
        self.queue = queue
        self.dialer = dialer
        self.clock = clock
        self.calendar = Calendar(config.hours, holidays)
        self.policy = Policy(config.retry, self.calendar)
        self.rates = AnswerRateModel(prior=config.initial_answer_rate)
        self.breaker = CircuitBreaker()
        cps = config.calls_per_second
        self.pacer = Pacer(cps, tokens=max(1.0, cps), at=clock.monotonic())
        self.on_event = on_event
        self.trunk_free = trunk_free
        self.tick_s = tick_s
        self.max_idle_s = max_idle_s
        self.status = CampaignStatus.RUNNING
        self.stats = LoopStats()
        self.alerts: list[CampaignAlert] = []
        self._dialing: set[Seat] = set()
        self._answered: set[Seat] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_calendar = False
        self._wake = asyncio.Event()

    # -- control
    def pause(self) -> None:
        self.status = CampaignStatus.PAUSED

    def resume(self) -> None:
        self.status = CampaignStatus.RUNNING
        self._wake.set()

    def stop(self) -> None:
        self.status = CampaignStatus.STOPPED
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._dialing) + len(self._answered)

    def _emit(self, kind: Any, message: str) -> None:
        alert = CampaignAlert(campaign=self.config.name, kind=kind, message=message, at=self.clock.now())
        self.alerts.append(alert)
        log.warning("campaign %s: %s", self.config.name, message)
        if self.on_event is not None:
            self.on_event(alert)

    def _over_budget(self) -> bool:
        """Pause (with an alert) once the spend reaches the cap; calls in flight finish (a small overshoot
        of at most the in-flight calls' cost)."""
        cap = self.config.budget
        if cap is None or self.spent < cap - 1e-9:  # money sums in floats: 0.3 + 7 x 0.1 reaches 1.0
            return False
        if self.status is CampaignStatus.RUNNING:
            self.pause()
            self._emit("budget_reached", f"budget {cap:g} reached (spent {self.spent:.2f}): campaign paused")
        return True

    def _take_seat(self, seat: Seat) -> bool:
        if seat.holding:
            return True
        if len(self._answered) >= self.config.ai_capacity:
            self.stats.abandoned += 1
            return False
        self._dialing.discard(seat)
        self._answered.add(seat)
        seat.holding = True
        self.stats.max_answered_concurrent = max(self.stats.max_answered_concurrent, len(self._answered))
        return True

    def _hour(self) -> int:
        from engine.campaign.calendar import zone

        return self.clock.now().astimezone(zone(self.config.timezone)).hour

    def budget(self) -> int:
        free = self.trunk_free() if self.trunk_free is not None else None
        tc = self.config.trunk_channels
        if tc is not None:
            free = min(free, tc - self.in_flight) if free is not None else tc - self.in_flight
        return self.pacer.budget(
            now=self.clock.monotonic(),
            answered=len(self._answered),
            dialing=len(self._dialing),
            answer_rate=self.rates.predict(self._hour()),
            ai_capacity=self.config.ai_capacity,
            max_concurrency=self.config.max_concurrency,
            trunk_free=free,
            strict=self.config.pacing == "strict",
        )

    async def step(self) -> int:
        """One scheduling pass: claim and start what the budget allows. Returns calls started."""
        if self.status is not CampaignStatus.RUNNING:
            return 0
        now = self.clock.now()
        cal = self.calendar.status(now)
        if cal is CalendarStatus.EXPIRED:
            self._emit("calendar_expired", "holiday calendar expired: dialing stopped until it is updated")
            self.pause()
            return 0
        if self._over_budget():
            return 0
        if cal is CalendarStatus.WARN and not self._warned_calendar:
            self._warned_calendar = True
            self._emit("calendar_expiring", f"holiday calendar expires on {self.calendar.holidays.expires}")
        n = self.budget()
        if n <= 0:
            return 0
        claims = await self.queue.claim(self.config.name, n, now)
        started = 0
        for c in claims:
            tz = contact_timezone(c.contact, self.config.timezone)
            if self.config.consent_required and not c.contact.consent:
                await self.queue.release(c, None, "no_consent")
                self.stats.released += 1
                continue
            if not self.calendar.is_open(now, tz):
                await self.queue.release(c, self.calendar.next_open(now, tz), "outside calling window")
                self.stats.released += 1
                continue
            seat = Seat(self)
            self._dialing.add(seat)
            self.pacer.spend(1)
            started += 1
            self.stats.dialed += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.in_flight)
            t = asyncio.get_running_loop().create_task(self._attempt(c, seat, tz))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return started

    async def _attempt(self, claim: Claim, seat: Seat, tz: str) -> None:
        hour = self._hour()
        try:
            outcome = await self.dialer(claim, seat)
        except Exception as e:  # a dialer bug must not kill the campaign: count it as infrastructure
            log.exception("campaign %s: attempt %s failed", self.config.name, claim.attempt_id)
            outcome = _FailedOutcome(str(e), self.clock.now())
        finally:
            self._dialing.discard(seat)
            self._answered.discard(seat)
        result = AttemptResult.of(outcome)
        infra = result.disposition in INFRASTRUCTURE
        c = claim.contact
        first = datetime.fromtimestamp(c.first_attempt_at, UTC) if c.first_attempt_at is not None else None
        decision = self.policy.decide(result, attempts_before=c.attempts, first_attempt_at=first, tz=tz)
        await self.queue.complete(claim, outcome, decision)
        d = result.disposition.value
        self.stats.dispositions[d] = self.stats.dispositions.get(d, 0) + 1
        if not infra:
            self.rates.observe(hour, is_answered(result.disposition))
            v = self.stats.by_variant.setdefault(c.variant or "", [0, 0])
            v[0] += 1
            v[1] += is_answered(result.disposition)
        if is_answered(result.disposition):
            self.stats.answered += 1
        if infra:
            self.stats.infra_failures += 1
        self.spent += float(getattr(outcome, "cost", 0.0) or 0.0)
        self._over_budget()
        if self.breaker.record(self.clock.monotonic(), infra) and self.status is CampaignStatus.RUNNING:
            self.pause()
            self._emit("circuit_breaker", "≥ 50% infrastructure failures in the last 2 min: campaign paused")
        self._wake.set()

    async def _pause_s(self, started: int) -> float:
        """Tick while calls are in flight; when idle, sleep until the next contact is due (≤ max_idle_s)."""
        if started or self._tasks or self.status is not CampaignStatus.RUNNING:
            return self.tick_s
        nxt = await self.queue.next_due(self.config.name)
        if nxt is None:
            return self.max_idle_s
        wait = (nxt - self.clock.now()).total_seconds()
        return min(self.max_idle_s, max(self.tick_s, wait))

    async def run(self, *, until_idle: bool = False, idle_rounds: int = 2) -> LoopStats:
        """Schedule until stopped (or, with until_idle, until nothing is due and nothing is in flight)."""
        idle = 0
        while self.status is not CampaignStatus.STOPPED:
            started = await self.step()
            if until_idle:
                if self.status is CampaignStatus.PAUSED and not self._tasks:
                    break
                idle = idle + 1 if (started == 0 and not self._tasks and self.budget() > 0) else 0
                if idle >= idle_rounds:
                    break
            await self.clock.sleep(await self._pause_s(started))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return self.stats


@dataclass
class _FailedOutcome:
    error: str
    ended_at: datetime
    disposition: Disposition = Disposition.FAILED
    tags: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


class MemoryQueue:
    """An in-memory ContactQueue (tests, benchmark): a heap by (-priority, due time), leases by phone."""

    def __init__(self, *, frequency_cap: FrequencyCap | None = None) -> None:
        self._heap: list[tuple[int, float, int, int]] = []
        self.contacts: dict[int, Contact] = {}
        self.state: dict[int, str] = {}
        self.leases: dict[str, int] = {}
        self.answered_at: dict[str, list[float]] = {}
        self.dnc: set[tuple[str, str]] = set()
        self.cap = frequency_cap or FrequencyCap()
        self.attempt_log: list[tuple[int, str, str]] = []  # (contact id, phone, disposition)
        self._ids = itertools.count(1)
        self._attempts = itertools.count(1)

    def add(self, contact: Contact, due: float = 0.0) -> Contact:
        cid = contact.id if contact.id is not None else next(self._ids)
        c = contact.model_copy(update={"id": cid})
        self.contacts[cid] = c
        self.state[cid] = "pending"
        heapq.heappush(self._heap, (-c.priority, due, next(self._ids), cid))
        return c

    def _push(self, cid: int, due: float) -> None:
        heapq.heappush(self._heap, (-self.contacts[cid].priority, due, next(self._ids), cid))

    async def claim(self, campaign: str, n: int, now: datetime) -> list[Claim]:
        ts = now.timestamp()
        out: list[Claim] = []
        deferred: list[tuple[int, float]] = []
        while self._heap and len(out) < n:
            _prio, due, _, cid = self._heap[0]
            if due > ts:
                # a lower-priority contact may be due while this one is not: look a little further
                heapq.heappop(self._heap)
                deferred.append((cid, due))
                if len(deferred) > 1000:
                    break
                continue
            heapq.heappop(self._heap)
            c = self.contacts[cid]
            if self.state[cid] != "pending" or c.campaign != campaign:
                continue
            if (c.phone, "") in self.dnc or (c.phone, campaign) in self.dnc:
                self.state[cid] = "dnc"
                continue
            if c.phone in self.leases:
                deferred.append((cid, ts + 60))
                continue
            nxt = self.cap.next_allowed(self.answered_at.get(c.phone, []), ts)
            if nxt is not None:
                deferred.append((cid, nxt))
                continue
            self.leases[c.phone] = cid
            self.state[cid] = "claimed"
            out.append(Claim(next(self._attempts), c, c.attempts + 1))
        for cid, due in deferred:
            self._push(cid, due)
        return out

    async def complete(self, claim: Claim, outcome: Any, decision: Decision) -> None:
        c = claim.contact
        assert c.id is not None
        self.leases.pop(c.phone, None)
        ts = outcome.ended_at.timestamp()
        self.attempt_log.append((c.id, c.phone, outcome.disposition.value))
        if is_answered(outcome.disposition):
            self.answered_at.setdefault(c.phone, []).append(ts)
        upd: dict[str, Any] = {}
        if decision.consumes_attempt:
            upd["attempts"] = c.attempts + 1
            if c.first_attempt_at is None:
                upd["first_attempt_at"] = ts
        c2 = c.model_copy(update=upd)
        self.contacts[c.id] = c2
        if decision.add_dnc:
            self.dnc.add((c.phone, ""))
        if decision.action is Action.RETRY and decision.at is not None:
            self.state[c.id] = "pending"
            self._push(c.id, decision.at.timestamp())
        else:
            self.state[c.id] = decision.action.value

    async def next_due(self, campaign: str) -> datetime | None:
        for _p, due, _, cid in heapq.nsmallest(1000, self._heap):
            if self.state.get(cid) == "pending" and self.contacts[cid].campaign == campaign:
                return datetime.fromtimestamp(due, UTC)
        return None

    async def release(self, claim: Claim, at: datetime | None, reason: str) -> None:
        c = claim.contact
        assert c.id is not None
        self.leases.pop(c.phone, None)
        if at is None:
            self.state[c.id] = reason
        else:
            self.state[c.id] = "pending"
            self._push(c.id, at.timestamp())
