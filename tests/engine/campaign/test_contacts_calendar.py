from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from engine.campaign.calendar import Calendar, CalendarStatus, CallingHours, HolidayCalendar
from engine.campaign.contacts import (
    Contact,
    assign_variant,
    contact_timezone,
    dedupe,
    normalise_cn,
    region_timezone,
)
from engine.errors import ConfigError

SH = "Asia/Shanghai"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("0086-13812345678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("010-62345678", "+861062345678"),
        ("(0755) 8765 4321", "+8675587654321"),
        ("+1 415 555 0100", "+14155550100"),
        ("12345", None),
        ("abc", None),
        ("", None),
    ],
)
def test_normalise_cn(raw: str, e164: str | None) -> None:
    assert normalise_cn(raw) == e164


def test_dedupe_against_existing() -> None:
    seen = {"+8613800000001"}
    got = list(dedupe(["+8613800000001", "+8613800000002", "+8613800000002"], seen))
    assert got == [("+8613800000001", True), ("+8613800000002", False), ("+8613800000002", True)]


def test_timezone_column_then_region_then_campaign() -> None:
    assert region_timezone("+8613800000000") == SH
    assert region_timezone("+85291234567") == "Asia/Hong_Kong"
    c = Contact(campaign="c", phone="+8613800000000")
    assert contact_timezone(c, "UTC") == SH
    assert contact_timezone(c.model_copy(update={"timezone": "Asia/Tokyo"}), "UTC") == "Asia/Tokyo"
    assert contact_timezone(Contact(campaign="c", phone="+9999999999"), "Europe/Paris") == "Europe/Paris"


def test_variant_split_follows_ratio_and_is_stable() -> None:
    counts = {"a": 0, "b": 0}
    for i in range(10_000):
        v = assign_variant(f"+86138{i:08d}", {"a": 0.8, "b": 0.2})
        assert v is not None
        counts[v] += 1
    assert 7600 < counts["a"] < 8400
    assert assign_variant("x", {"a": 1, "b": 1}) == assign_variant("x", {"a": 1, "b": 1})


def test_window_in_contact_timezone() -> None:
    cal = Calendar(holidays=HolidayCalendar())
    at = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # Monday 08:30 Shanghai, 09:30 Tokyo
    assert not cal.is_open(at, SH)
    assert cal.is_open(at, "Asia/Tokyo")
    assert cal.next_open(at, SH) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    late = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 20:00 Shanghai: closed, next 09:00 tomorrow
    assert cal.next_open(late, SH) == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


def test_chinese_holidays_and_makeup_workday() -> None:
    hours = CallingHours(weekdays={d: [(time(9), time(20))] for d in range(5)})  # workdays only
    cal = Calendar(hours)
    # Saturday 2026-02-14 is a 调休 make-up workday: open
    assert cal.is_open(datetime(2026, 2, 14, 2, 0, tzinfo=UTC), SH)
    # Spring festival 2026-02-15..23: closed; next window is Tuesday 2026-02-24 09:00
    assert not cal.is_open(datetime(2026, 2, 16, 2, 0, tzinfo=UTC), SH)
    assert cal.next_open(datetime(2026, 2, 15, 2, 0, tzinfo=UTC), SH) == datetime(2026, 2, 24, 1, tzinfo=UTC)
    # an ordinary Saturday is closed with these hours
    assert not cal.is_open(datetime(2026, 3, 7, 2, 0, tzinfo=UTC), SH)


def test_calendar_expiry_warns_then_stops() -> None:
    cal = Calendar(holidays=HolidayCalendar(expires=date(2026, 12, 31)))
    assert cal.status(datetime(2026, 11, 1, tzinfo=UTC)) is CalendarStatus.OK
    assert cal.status(datetime(2026, 12, 15, tzinfo=UTC)) is CalendarStatus.WARN
    after = datetime(2027, 1, 4, 3, 0, tzinfo=UTC)
    assert cal.status(after) is CalendarStatus.EXPIRED
    assert not cal.is_open(after, SH)
    assert cal.next_open(after, SH) is None
    # the window search never runs past the expiry either
    assert cal.next_open(datetime(2026, 12, 31, 13, 0, tzinfo=UTC), SH) is None


def test_holiday_yaml_update(tmp_path: Path) -> None:
    p = tmp_path / "h.yaml"
    p.write_text(
        "expires: 2027-12-31\nholidays:\n  - {from: 2027-01-01, to: 2027-01-03, name: 元旦}\n"
        "workdays: [2027-01-09]\n",
        encoding="utf-8",
    )
    h = HolidayCalendar.from_yaml(p)
    assert h.kind(date(2027, 1, 2)) == "holiday" and h.kind(date(2027, 1, 9)) == "workday"
    assert h.check(date(2027, 6, 1)) is CalendarStatus.OK
    p.write_text("holidays: [{from: nope}]", encoding="utf-8")
    with pytest.raises(ConfigError, match="holiday calendar"):
        HolidayCalendar.from_yaml(p)


def test_bad_timezone_is_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Base"):
        Calendar().is_open(datetime(2026, 3, 2, tzinfo=UTC), "Mars/Base")
