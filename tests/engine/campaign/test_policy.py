from datetime import UTC, datetime, timedelta

from engine.campaign.calendar import Calendar, HolidayCalendar
from engine.campaign.policy import (
    Action,
    AttemptResult,
    DncList,
    FrequencyCap,
    Policy,
    eligibility,
)
from engine.dispositions import Disposition

SH = "Asia/Shanghai"
MON_10 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 Shanghai


def pol() -> Policy:
    return Policy(calendar=Calendar(holidays=HolidayCalendar()))


def res(d: Disposition, at: datetime = MON_10, tags: tuple[str, ...] = (), **v: str) -> AttemptResult:
    return AttemptResult(disposition=d, ended_at=at, tags=tags, variables=tuple(v.items()))


def test_busy_retries_in_30_minutes() -> None:
    d = pol().decide(res(Disposition.BUSY), attempts_before=0, first_attempt_at=None, tz=SH)
    assert d.action is Action.RETRY and d.consumes_attempt
    assert d.at == MON_10 + timedelta(minutes=30)


def test_no_answer_rotates_time_of_day_then_exhausts() -> None:
    p = pol()
    first = MON_10
    d1 = p.decide(res(Disposition.NO_ANSWER), attempts_before=0, first_attempt_at=first, tz=SH)
    assert d1.at == datetime(2026, 3, 3, 4, 0, tzinfo=UTC)  # Tuesday noon Shanghai
    assert d1.at is not None
    d2 = p.decide(res(Disposition.NO_ANSWER, d1.at), attempts_before=1, first_attempt_at=first, tz=SH)
    assert d2.at == datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # Wednesday 18:30 Shanghai
    assert d2.at is not None
    # day 3 morning would be past the 3-day limit counted from the first attempt
    d3 = p.decide(res(Disposition.NO_ANSWER, d2.at), attempts_before=2, first_attempt_at=first, tz=SH)
    assert d3.action is Action.RETRY and d3.at == datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    assert d3.at is not None
    d4 = p.decide(res(Disposition.NO_ANSWER, d3.at), attempts_before=3, first_attempt_at=first, tz=SH)
    assert d4.action is Action.EXHAUSTED


def test_max_attempts() -> None:
    d = pol().decide(res(Disposition.BUSY), attempts_before=4, first_attempt_at=MON_10, tz=SH)
    assert d.action is Action.EXHAUSTED


def test_invalid_number_closes_powered_off_retries() -> None:
    p = pol()
    assert p.decide(
        res(Disposition.INVALID_NUMBER), attempts_before=0, first_attempt_at=None, tz=SH
    ).action is (Action.DONE)
    d = p.decide(res(Disposition.POWERED_OFF), attempts_before=0, first_attempt_at=None, tz=SH)
    assert d.action is Action.RETRY and d.at == MON_10 + timedelta(hours=4)


def test_infrastructure_failure_does_not_consume_attempt() -> None:
    d = pol().decide(res(Disposition.FAILED), attempts_before=4, first_attempt_at=MON_10, tz=SH)
    assert d.action is Action.RETRY and not d.consumes_attempt


def test_callback_at_time_asked_clamped_into_window() -> None:
    p = pol()
    d = p.decide(
        res(Disposition.ANSWERED, tags=("callback",), callback_time="15:00"),
        attempts_before=0,
        first_attempt_at=None,
        tz=SH,
    )
    assert d.action is Action.RETRY and d.at == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    late = p.decide(
        res(Disposition.ANSWERED, tags=("callback",), callback_time="22:30"),
        attempts_before=0,
        first_attempt_at=None,
        tz=SH,
    )
    assert late.at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # clamped to 09:00 the next day


def test_stop_calling_adds_dnc() -> None:
    d = pol().decide(
        res(Disposition.ANSWERED, tags=("dnc",)), attempts_before=0, first_attempt_at=None, tz=SH
    )
    assert d.action is Action.DNC and d.add_dnc


def test_frequency_cap() -> None:
    cap = FrequencyCap()
    now = 1_000_000.0
    assert cap.next_allowed([], now) is None
    assert cap.next_allowed([now - 6 * 86400], now) is None
    assert cap.next_allowed([now - 86400], now) == now - 86400 + 5 * 86400


def test_dnc_and_consent() -> None:
    dnc = DncList([("+861", ""), ("+862", "c1")])
    kw = {"consent": True, "consent_required": False, "dnc": dnc}
    assert eligibility(phone="+861", campaign="c2", **kw) == "dnc"  # type: ignore[arg-type]
    assert eligibility(phone="+862", campaign="c1", **kw) == "dnc"  # type: ignore[arg-type]
    assert eligibility(phone="+862", campaign="c2", **kw) is None  # type: ignore[arg-type]
    assert (
        eligibility(phone="+863", campaign="c", consent=None, consent_required=True, dnc=dnc) == "no_consent"
    )
