"""What happens after an attempt, and who may be called at all.

- Retry by disposition: busy → 30 min later; no answer → the next day at another time of day (noon on
  day 1, evening on day 2, morning on day 3 …); invalid numbers close the contact; powered off /
  unreachable retry after a delay; a callback the callee asked for at the time asked (clamped into the
  calling window). At most `max_attempts` attempts within `max_days` of the first one.
- Infrastructure failures (Disposition.FAILED, a retryable TelephonyError) never consume an attempt.
- Compliance: DNC (global and per campaign; a stop_calling / dnc tag adds the number), consent when the
  campaign requires it, a frequency cap per number across all campaigns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.campaign.calendar import Calendar, zone
from engine.dispositions import CONNECTED, INFRASTRUCTURE, Disposition

DNC_TAGS = frozenset({"dnc", "stop_calling"})
CALLBACK_TAGS = frozenset({"callback", "busy_callback"})
CONVERTED_TAGS = frozenset({"converted"})


class Action(StrEnum):
    RETRY = "retry"  # dial again at `at`
    DONE = "done"  # finished (reached, or nothing more to do)
    EXHAUSTED = "exhausted"  # attempts or days used up
    DNC = "dnc"  # must not be called again
    SKIP = "skip"  # not dialed now (compliance), state unchanged otherwise


class RetryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry: bool = True
    delay_s: float | None = Field(None, description="fixed delay; None: next day at another time of day")


def _default_rules() -> dict[Disposition, RetryRule]:
    return {
        Disposition.BUSY: RetryRule(delay_s=30 * 60),
        Disposition.NO_ANSWER: RetryRule(delay_s=None),
        Disposition.REJECTED: RetryRule(delay_s=None),
        Disposition.VOICEMAIL: RetryRule(delay_s=None),
        Disposition.MEDIA_TIMEOUT: RetryRule(delay_s=60 * 60),
        Disposition.POWERED_OFF: RetryRule(delay_s=4 * 3600),
        Disposition.UNREACHABLE: RetryRule(delay_s=2 * 3600),
        Disposition.CARRIER_BLOCKED: RetryRule(delay_s=None),
        Disposition.CANCELLED: RetryRule(delay_s=30 * 60),
        Disposition.TRANSFER_FAILED: RetryRule(retry=False),
        Disposition.INVALID_NUMBER: RetryRule(retry=False),
        Disposition.SUSPENDED: RetryRule(retry=False),
        Disposition.ANSWERED: RetryRule(retry=False),
        Disposition.DNC_BLOCKED: RetryRule(retry=False),
    }


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(5, ge=1)
    max_days: float = Field(3.0, gt=0, description="no retry later than this after the first attempt")
    rules: dict[Disposition, RetryRule] = Field(default_factory=_default_rules)
    #: local times of day tried on successive days after no answer (noon day 1, evening day 2 …)
    day_slots: list[time] = Field(default_factory=lambda: [time(12, 0), time(18, 30), time(10, 0)])
    infrastructure_delay_s: float = Field(5 * 60, description="retry after a trunk/5xx failure")
    lease_expired_delay_s: float = Field(
        30 * 60, description="after a crashed node's lease expires, wait this long before redialing"
    )
    callback_default_s: float = Field(2 * 3600, description="callback asked without a time")


class FrequencyCap(BaseModel):
    """At most `max_answered` answered calls per number in `window_s`, across all campaigns."""

    model_config = ConfigDict(extra="forbid")

    max_answered: int = Field(1, ge=1)
    window_s: float = Field(5 * 86400, gt=0)

    def next_allowed(self, answered_at: Sequence[float], now: float) -> float | None:
        """None if a call is allowed now, else the epoch second it becomes allowed."""
        recent = sorted(t for t in answered_at if t > now - self.window_s)
        if len(recent) < self.max_answered:
            return None
        return recent[len(recent) - self.max_answered] + self.window_s


@dataclass(frozen=True)
class Decision:
    action: Action
    at: datetime | None = None
    consumes_attempt: bool = True
    add_dnc: bool = False
    reason: str = ""


@dataclass(frozen=True)
class AttemptResult:
    """What the policy needs to know about a finished attempt (built from a CallOutcome)."""

    disposition: Disposition
    ended_at: datetime
    tags: tuple[str, ...] = ()
    variables: tuple[tuple[str, Any], ...] = ()
    retryable_infra: bool = False

    @classmethod
    def of(cls, outcome: Any) -> AttemptResult:
        return cls(
            disposition=outcome.disposition,
            ended_at=outcome.ended_at,
            tags=tuple(outcome.tags),
            variables=tuple(outcome.variables.items()),
        )


def parse_callback_time(value: Any, now: datetime, tz: str) -> datetime | None:
    """`callback_time` as an ISO datetime, or "HH:MM" local (today if still ahead, else tomorrow)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone(tz))
    s = str(value).strip()
    try:
        dt = datetime.fromisoformat(s)
        return dt if dt.tzinfo else dt.replace(tzinfo=zone(tz))
    except ValueError:
        pass
    try:
        t = time.fromisoformat(s)
    except ValueError:
        return None
    local = now.astimezone(zone(tz))
    cand = datetime.combine(local.date(), t, zone(tz))
    if cand <= local:
        cand += timedelta(days=1)
    return cand


class Policy:
    def __init__(self, retry: RetryPolicy | None = None, calendar: Calendar | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.calendar = calendar or Calendar()

    def decide(
        self,
        result: AttemptResult,
        *,
        attempts_before: int,
        first_attempt_at: datetime | None,
        tz: str,
    ) -> Decision:
        """Next step for a contact after one attempt. `attempts_before`: consumed attempts before it."""
        r = self.retry
        now = result.ended_at
        tags = set(result.tags)
        if tags & DNC_TAGS:
            return Decision(Action.DNC, add_dnc=True, reason="callee asked not to be called")
        if tags & CONVERTED_TAGS:
            return Decision(Action.DONE, reason="converted")
        if result.disposition in INFRASTRUCTURE or result.retryable_infra:
            at = self.calendar.next_open(now + timedelta(seconds=r.infrastructure_delay_s), tz)
            if at is None:
                return Decision(Action.EXHAUSTED, consumes_attempt=False, reason="no calling window ahead")
            return Decision(Action.RETRY, at, consumes_attempt=False, reason="infrastructure failure")
        used = attempts_before + 1
        first = first_attempt_at or now
        deadline = first + timedelta(days=r.max_days)
        if tags & CALLBACK_TAGS:
            asked = parse_callback_time(dict(result.variables).get("callback_time"), now, tz)
            want = asked or now + timedelta(seconds=r.callback_default_s)
            at = self.calendar.clamp(want, tz)
            if at is None:
                return Decision(Action.EXHAUSTED, reason="no calling window for the callback")
            return Decision(Action.RETRY, at, reason="callback asked", consumes_attempt=True)
        rule = r.rules.get(result.disposition, RetryRule(retry=False))
        if not rule.retry:
            return Decision(Action.DONE, reason=f"{result.disposition.value}: final")
        if used >= r.max_attempts:
            return Decision(Action.EXHAUSTED, reason=f"{used} attempts used")
        if rule.delay_s is not None:
            want = now + timedelta(seconds=rule.delay_s)
        else:
            local = now.astimezone(zone(tz))
            slot = r.day_slots[(used - 1) % len(r.day_slots)] if r.day_slots else local.time()
            want = self.calendar.at_local(local.date() + timedelta(days=1), slot, tz)
        at = self.calendar.next_open(want, tz)
        if at is None or at > deadline:
            return Decision(Action.EXHAUSTED, reason=f"no retry within {r.max_days:g} days")
        return Decision(Action.RETRY, at, reason=f"{result.disposition.value}: retry")

    def lease_expired(self, now: datetime, tz: str) -> Decision:
        """A node died while the attempt was in flight: we cannot know whether it rang; do not consume
        the attempt, but wait before dialing again so a callee is not rung twice in a row."""
        at = self.calendar.next_open(now + timedelta(seconds=self.retry.lease_expired_delay_s), tz)
        if at is None:
            return Decision(Action.EXHAUSTED, consumes_attempt=False, reason="lease expired, no window")
        return Decision(Action.RETRY, at, consumes_attempt=False, reason="lease expired (node lost)")


class DncList:
    """Do-not-call numbers: global ('' campaign) and per campaign. In memory; the store persists."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._s: set[tuple[str, str]] = set(entries)

    def add(self, phone: str, campaign: str = "") -> None:
        self._s.add((phone, campaign))

    def remove(self, phone: str, campaign: str = "") -> None:
        self._s.discard((phone, campaign))

    def blocked(self, phone: str, campaign: str) -> bool:
        return (phone, "") in self._s or (phone, campaign) in self._s


def eligibility(
    *,
    phone: str,
    campaign: str,
    consent: bool | None,
    consent_required: bool,
    dnc: DncList,
) -> str | None:
    """None if the contact may be dialed, else the reason it may not."""
    if dnc.blocked(phone, campaign):
        return "dnc"
    if consent_required and not consent:
        return "no_consent"
    return None


def is_answered(disposition: Disposition) -> bool:
    """Answered calls count toward the frequency cap."""
    return disposition in CONNECTED


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
