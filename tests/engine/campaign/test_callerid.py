"""Caller-ID pool: same-city first, rotation, daily caps, quarantine on falling health, restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.campaign.callerid import CallerIdPolicy, CallerIdPool, area_code
from engine.dispositions import Disposition

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.mark.parametrize(
    ("number", "area"),
    [
        ("01062123456", "010"),
        ("+862162123456", "021"),
        ("0086 755 8612 3456", "0755"),
        ("075586123456", "0755"),
        ("13812345678", None),
        ("+8613812345678", None),
        ("4008001234", None),
        ("+14155550100", None),
    ],
)
def test_area_code(number: str, area: str | None) -> None:
    assert area_code(number) == area


def test_same_city_first_then_rotation() -> None:
    pool = CallerIdPool(["01062120001", "02162120001", "02162120002"])
    picks = [pool.pick("+862188880000", T0) for _ in range(4)]
    assert set(picks) == {"02162120001", "02162120002"}  # only Shanghai numbers for a Shanghai landline
    assert picks.count("02162120001") == 2  # rotated evenly
    mobile = [pool.pick("13812345678", T0) for _ in range(3)]
    assert "01062120001" in mobile  # no city known: the least used number goes first
    assert pool.pick("13812345678", T0, callee_area="010") == "01062120001"  # a list column can name it


def test_daily_cap_and_the_next_local_day() -> None:
    pool = CallerIdPool(["01062120001"], CallerIdPolicy(daily_cap=2))
    assert pool.pick("x", T0) and pool.pick("x", T0)
    assert pool.pick("x", T0) is None
    assert pool.health(T0)[0].state == "capped"
    assert pool.pick("x", T0 + timedelta(hours=15)) == "01062120001"  # 01:00 next day in Shanghai


def _feed(pool: CallerIdPool, n: int, disp: Disposition, talk_s: float = 30.0) -> list[object]:
    return [pool.record("01062120001", disp, talk_s, T0) for _ in range(n)]


def test_quarantine_when_answer_rate_falls_and_back_on_probation_after() -> None:
    pol = CallerIdPolicy(min_attempts=10, min_answer_rate=0.2, quarantine_s=3600)
    pool = CallerIdPool(["01062120001", "01062120002"], pol)
    events = _feed(pool, 2, Disposition.ANSWERED) + _feed(pool, 8, Disposition.NO_ANSWER)
    assert [e for e in events if e is not None] == []  # 20 % is not below 20 %
    q = pool.record("01062120001", Disposition.NO_ANSWER, 0, T0)
    assert q is not None and "answer rate" in q.reason
    assert all(pool.pick("x", T0) == "01062120002" for _ in range(5))
    h = {x.number: x for x in pool.health(T0)}
    assert h["01062120001"].state == "quarantined" and h["01062120001"].reason
    later = T0 + timedelta(seconds=3601)
    assert "01062120001" in {pool.pick("x", later) for _ in range(12)}  # probation: judged afresh
    assert pool.health(later)[0].window_attempts == 0


def test_short_calls_and_carrier_blocks_quarantine() -> None:
    pol = CallerIdPolicy(min_attempts=10)
    pool = CallerIdPool(["01062120001"], pol)
    events = _feed(pool, 10, Disposition.ANSWERED, talk_s=2.0)
    assert events[-1] is not None and "ended within" in getattr(events[-1], "reason", "")
    pool2 = CallerIdPool(["01062120001"], pol)
    events = _feed(pool2, 6, Disposition.ANSWERED) + _feed(pool2, 4, Disposition.CARRIER_BLOCKED)
    assert events[-1] is not None and "carrier rejected" in getattr(events[-1], "reason", "")
    assert pool2.health(T0)[0].blocked == 4


def test_infrastructure_failures_say_nothing_about_the_number() -> None:
    pool = CallerIdPool(["01062120001"], CallerIdPolicy(min_attempts=5))
    assert all(e is None for e in _feed(pool, 50, Disposition.FAILED))
    assert pool.health(T0)[0].window_attempts == 0
    assert pool.record("09990000000", Disposition.NO_ANSWER, 0, T0) is None  # not in the pool


def test_dump_and_restore_keep_quarantine_and_counts() -> None:
    pol = CallerIdPolicy(min_attempts=5, quarantine_s=7200)
    pool = CallerIdPool(["01062120001"], pol)
    pool.pick("x", T0)
    _feed(pool, 5, Disposition.NO_ANSWER)
    again = CallerIdPool(["01062120001", "01062120002"], pol)
    again.restore("01062120001", pool.dump("01062120001"))
    again.restore("09990000000", {"today": 3})  # a number since removed from the trunk: ignored
    h = {x.number: x for x in again.health(T0)}
    assert h["01062120001"].state == "quarantined" and h["01062120001"].attempts_today == 1
    assert again.pick("x", T0) == "01062120002"
    assert again.release("01062120001") and again.health(T0)[0].state == "healthy"
