"""Caller-ID pool per trunk: rotation, same-city preference, daily caps, and health with quarantine.

Carriers and the phone apps (腾讯手机管家, 360) mark a caller ID as 骚扰/推销 when many people reject or
ignore it; the practical signs are a falling answer rate and a rising share of calls hung up within a few
seconds. The pool tracks, per caller ID, its last `window` attempts and quarantines it for
`quarantine_s` when, over at least `min_attempts`, the answer rate falls below `min_answer_rate`, the
short-call share of answered calls rises above `max_short_ratio`, or carrier rejections (carrier_blocked:
403 / Q.850 21, 29) exceed `max_blocked_ratio`. Infrastructure failures (`failed`) say nothing about the
number and are not counted.

Picking: healthy numbers under their daily cap; among them the callee's own area code first (a local
number is answered more often), then the least used today (rotation). Pure: time comes in as `now`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.campaign.calendar import zone
from engine.dispositions import Disposition


class CallerIdPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_cap: int = Field(600, ge=1, description="attempts per caller ID per local day")
    window: int = Field(50, ge=5, description="recent attempts judged per caller ID")
    min_attempts: int = Field(20, ge=1, description="attempts in the window before health is judged")
    min_answer_rate: float = Field(0.08, ge=0, le=1)
    short_call_s: float = Field(6.0, ge=0, description="an answered call shorter than this is 'short'")
    max_short_ratio: float = Field(0.6, ge=0, le=1, description="short calls / answered calls")
    max_blocked_ratio: float = Field(0.3, ge=0, le=1, description="carrier_blocked / attempts")
    quarantine_s: float = Field(24 * 3600, gt=0)
    prefer_local: bool = True
    timezone: str = "Asia/Shanghai"


def area_code(number: str) -> str | None:
    """The area code of a Chinese landline (010, 021, 0755 …) in national or +86 form; None for mobiles,
    service numbers and other countries."""
    n = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    if n.startswith("+86"):
        n = "0" + n[3:]
    elif n.startswith("0086"):
        n = "0" + n[4:]
    elif n.startswith("+"):
        return None
    if len(n) < 10 or not n.startswith("0") or n[1] == "0":
        return None
    if n[1] == "1":  # 010 is the only area code in 1x; 01xx... is a mobile written with a trunk 0
        return "010" if n[2] == "0" else None
    return n[:3] if n[1] == "2" else n[:4]


class CallerIdHealth(BaseModel):
    """What the API and console show per caller ID."""

    number: str
    area_code: str | None
    state: str = Field(description="healthy | quarantined | capped")
    attempts_today: int
    window_attempts: int
    answer_rate: float | None
    short_ratio: float | None
    blocked: int = Field(description="carrier_blocked attempts in the window")
    quarantined_until: datetime | None = None
    reason: str | None = None


@dataclass
class _Attempt:
    answered: bool
    short: bool
    blocked: bool


@dataclass
class _State:
    number: str
    area: str | None
    recent: deque[_Attempt]
    day: str = ""
    today: int = 0
    quarantined_until: datetime | None = None
    reason: str | None = None
    total: int = field(default=0)


@dataclass
class Quarantined:
    """Returned by `record` when a caller ID has just been quarantined (the caller raises an alert)."""

    number: str
    until: datetime
    reason: str


class CallerIdPool:
    def __init__(self, numbers: list[str], policy: CallerIdPolicy | None = None) -> None:
        self.policy = policy or CallerIdPolicy()
        self._zone = zone(self.policy.timezone)
        self._states: dict[str, _State] = {}
        for n in numbers:
            if n not in self._states:
                self._states[n] = _State(n, area_code(n), deque(maxlen=self.policy.window))

    @property
    def numbers(self) -> list[str]:
        return list(self._states)

    def _day(self, s: _State, now: datetime) -> None:
        d = now.astimezone(self._zone).date().isoformat()
        if s.day != d:
            s.day, s.today = d, 0

    def _usable(self, s: _State, now: datetime) -> bool:
        self._day(s, now)
        if s.quarantined_until is not None:
            if now < s.quarantined_until:
                return False
            # back on probation: judged afresh on new attempts
            s.quarantined_until, s.reason = None, None
            s.recent.clear()
        return s.today < self.policy.daily_cap

    def pick(self, callee: str | None, now: datetime, *, callee_area: str | None = None) -> str | None:
        """A caller ID for this callee, or None when every number is quarantined or at its cap."""
        usable = [s for s in self._states.values() if self._usable(s, now)]
        if not usable:
            return None
        area = callee_area or (area_code(callee) if callee else None)
        if self.policy.prefer_local and area:
            local = [s for s in usable if s.area == area]
            usable = local or usable
        best = min(usable, key=lambda s: (s.today, s.total))
        best.today += 1
        best.total += 1
        return best.number

    def record(
        self, number: str | None, disposition: Disposition, talk_s: float, now: datetime
    ) -> Quarantined | None:
        """Count one finished attempt; quarantine the number when its health falls."""
        s = self._states.get(number or "")
        if s is None or disposition is Disposition.FAILED:
            return None
        answered = disposition is Disposition.ANSWERED
        s.recent.append(
            _Attempt(
                answered=answered,
                short=answered and talk_s < self.policy.short_call_s,
                blocked=disposition is Disposition.CARRIER_BLOCKED,
            )
        )
        if s.quarantined_until is not None:
            return None
        reason = self._verdict(s)
        if reason is None:
            return None
        s.quarantined_until = now + timedelta(seconds=self.policy.quarantine_s)
        s.reason = reason
        return Quarantined(s.number, s.quarantined_until, reason)

    def _rates(self, s: _State) -> tuple[int, float | None, float | None, int]:
        n = len(s.recent)
        answered = sum(a.answered for a in s.recent)
        short = sum(a.short for a in s.recent)
        blocked = sum(a.blocked for a in s.recent)
        return (
            n,
            answered / n if n else None,
            short / answered if answered else None,
            blocked,
        )

    def _verdict(self, s: _State) -> str | None:
        p = self.policy
        n, rate, short, blocked = self._rates(s)
        if n < p.min_attempts:
            return None
        if blocked / n > p.max_blocked_ratio:
            return f"carrier rejected {blocked} of the last {n} attempts (403/Q.850 21) — likely blocked"
        if rate is not None and rate < p.min_answer_rate:
            return f"answer rate {rate:.0%} over the last {n} attempts is below {p.min_answer_rate:.0%}"
        if short is not None and short > p.max_short_ratio:
            return (
                f"{short:.0%} of answered calls ended within {p.short_call_s:g} s "
                f"(over {p.max_short_ratio:.0%}) — likely marked as spam"
            )
        return None

    def release(self, number: str) -> bool:
        """An operator lifts a quarantine (e.g. after the carrier cleared the mark)."""
        s = self._states.get(number)
        if s is None or s.quarantined_until is None:
            return False
        s.quarantined_until, s.reason = None, None
        s.recent.clear()
        return True

    def health(self, now: datetime) -> list[CallerIdHealth]:
        out = []
        for s in self._states.values():
            self._day(s, now)
            n, rate, short, blocked = self._rates(s)
            quarantined = s.quarantined_until is not None and now < s.quarantined_until
            state = (
                "quarantined" if quarantined else "capped" if s.today >= self.policy.daily_cap else "healthy"
            )
            out.append(
                CallerIdHealth(
                    number=s.number,
                    area_code=s.area,
                    state=state,
                    attempts_today=s.today,
                    window_attempts=n,
                    answer_rate=None if rate is None else round(rate, 4),
                    short_ratio=None if short is None else round(short, 4),
                    blocked=blocked,
                    quarantined_until=s.quarantined_until if quarantined else None,
                    reason=s.reason if quarantined else None,
                )
            )
        return out

    # ---- persistence (the store keeps one JSON document per caller ID)
    def dump(self, number: str) -> dict[str, Any]:
        s = self._states[number]
        return {
            "day": s.day,
            "today": s.today,
            "total": s.total,
            "recent": [[a.answered, a.short, a.blocked] for a in s.recent],
            "quarantined_until": s.quarantined_until.isoformat() if s.quarantined_until else None,
            "reason": s.reason,
        }

    def restore(self, number: str, data: dict[str, Any]) -> None:
        s = self._states.get(number)
        if s is None:  # a number removed from the trunk's pool since
            return
        s.day = str(data.get("day", ""))
        s.today = int(data.get("today", 0))
        s.total = int(data.get("total", 0))
        s.recent.clear()
        for a in data.get("recent", [])[-self.policy.window :]:
            s.recent.append(_Attempt(bool(a[0]), bool(a[1]), bool(a[2])))
        q = data.get("quarantined_until")
        s.quarantined_until = datetime.fromisoformat(q) if q else None
        s.reason = data.get("reason")
