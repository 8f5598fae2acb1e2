"""Calling windows per weekday and the holiday calendar, evaluated in the contact's time zone.

A day is a *workday* (Mon–Fri, or a 调休 make-up workday), a *restday* (Sat/Sun) or a *holiday*. The
windows give, per weekday (0 = Monday … 6 = Sunday) and for holidays, the local times calls may start.
A make-up workday uses Monday's windows. The holiday table has an expiry date: `check()` warns in the
last `warn_days` days and says `expired` after it, and then nothing is open until it is updated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.campaign import cn_holidays
from engine.errors import ConfigError

Window = tuple[time, time]
DEFAULT_WINDOW: Window = (time(9, 0), time(20, 0))


class CalendarStatus(StrEnum):
    OK = "ok"
    WARN = "warn"  # expires soon: update the holiday table
    EXPIRED = "expired"  # dialing stops


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"unknown time zone {name!r}", hint="use an IANA name like Asia/Shanghai") from e


@dataclass(frozen=True)
class HolidayCalendar:
    holidays: dict[date, str] = field(default_factory=dict)
    workdays: frozenset[date] = frozenset()
    expires: date | None = None
    warn_days: int = 30

    @classmethod
    def china(cls) -> HolidayCalendar:
        return cls.from_data(
            {
                "expires": cn_holidays.EXPIRES.isoformat(),
                "holidays": cn_holidays.HOLIDAYS,
                "workdays": cn_holidays.MAKEUP_WORKDAYS,
            }
        )

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> HolidayCalendar:
        hol: dict[date, str] = {}
        for item in data.get("holidays", []):
            first, last, name = (
                (item["from"], item["to"], item.get("name", "")) if isinstance(item, dict) else item
            )
            d, end = _date(first), _date(last)
            while d <= end:
                hol[d] = str(name)
                d += timedelta(days=1)
        exp = data.get("expires")
        return cls(
            holidays=hol,
            workdays=frozenset(_date(x) for x in data.get("workdays", [])),
            expires=_date(exp) if exp is not None else None,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> HolidayCalendar:
        """Load `{expires: YYYY-MM-DD, holidays: [{from, to, name}], workdays: [YYYY-MM-DD]}`."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            return cls.from_data(data)
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"{path}: cannot read holiday calendar: {e}",
                hint="expected expires:, holidays: [{from, to, name}], workdays: [dates]",
            ) from e

    def kind(self, d: date) -> str:
        if d in self.holidays:
            return "holiday"
        if d in self.workdays:
            return "workday"
        return "restday" if d.weekday() >= 5 else "workday"

    def check(self, today: date) -> CalendarStatus:
        if self.expires is None:
            return CalendarStatus.OK
        if today > self.expires:
            return CalendarStatus.EXPIRED
        if today > self.expires - timedelta(days=self.warn_days):
            return CalendarStatus.WARN
        return CalendarStatus.OK


def _date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v))


class CallingHours(BaseModel):
    """Windows (local start, end) per weekday and for holidays. Default 09:00–20:00 every day, none on
    public holidays."""

    model_config = ConfigDict(extra="forbid")

    weekdays: dict[int, list[Window]] = Field(default_factory=lambda: {d: [DEFAULT_WINDOW] for d in range(7)})
    holiday: list[Window] = Field(default_factory=list)

    @field_validator("weekdays")
    @classmethod
    def _check(cls, v: dict[int, list[Window]]) -> dict[int, list[Window]]:
        for d, ws in v.items():
            if not 0 <= d <= 6:
                raise ValueError(f"weekday {d} must be 0 (Monday) .. 6 (Sunday)")
            for a, b in ws:
                if a >= b:
                    raise ValueError(f"window {a}-{b} ends before it starts")
        return v

    @classmethod
    def every_day(cls, start: time, end: time, *, holidays: bool = False) -> CallingHours:
        return cls(weekdays={d: [(start, end)] for d in range(7)}, holiday=[(start, end)] if holidays else [])


class Calendar:
    """Answers 'may we call now?' and 'when next?' for a time zone."""

    def __init__(self, hours: CallingHours | None = None, holidays: HolidayCalendar | None = None) -> None:
        self.hours = hours or CallingHours()
        self.holidays = holidays if holidays is not None else HolidayCalendar.china()

    def windows_on(self, d: date) -> list[Window]:
        kind = self.holidays.kind(d)
        if kind == "holiday":
            return sorted(self.hours.holiday)
        wd = 0 if (kind == "workday" and d.weekday() >= 5) else d.weekday()
        return sorted(self.hours.weekdays.get(wd, []))

    def status(self, at: datetime) -> CalendarStatus:
        return self.holidays.check(at.astimezone(UTC).date())

    def is_open(self, at: datetime, tz: str) -> bool:
        if self.status(at) is CalendarStatus.EXPIRED:
            return False
        local = at.astimezone(zone(tz))
        t = local.time().replace(tzinfo=None)
        return any(a <= t < b for a, b in self.windows_on(local.date()))

    def next_open(self, at: datetime, tz: str, *, horizon_days: int = 31) -> datetime | None:
        """`at` if open, else the start of the next window (UTC); None if nothing opens within the
        horizon or the holiday table has expired."""
        if self.status(at) is CalendarStatus.EXPIRED:
            return None
        z = zone(tz)
        local = at.astimezone(z)
        for i in range(horizon_days + 1):
            d = local.date() + timedelta(days=i)
            if self.holidays.expires is not None and d > self.holidays.expires:
                return None
            for a, b in self.windows_on(d):
                start = datetime.combine(d, a, z)
                end = datetime.combine(d, b, z)
                if local < end:
                    return max(start, local).astimezone(UTC)
        return None

    def at_local(self, day: date, t: time, tz: str) -> datetime:
        return datetime.combine(day, t, zone(tz)).astimezone(UTC)

    def clamp(self, at: datetime, tz: str) -> datetime | None:
        """A requested time moved into the next calling window (a callback the callee asked for)."""
        return self.next_open(at, tz)
