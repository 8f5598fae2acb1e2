"""Daily report figures and the node funnel from outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from engine.dispositions import Disposition
from engine.outcome import CallOutcome, Grade, Turn
from engine.reporting import daily_report

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def call(
    i: int, disp: Disposition, path: tuple[str, ...] = (), grade: Grade = "C", talk: float = 0.0
) -> CallOutcome:
    answered = T0 + timedelta(seconds=5) if disp is Disposition.ANSWERED else None
    turns = [Turn(speaker="bot", text=n, node=n, start_s=k) for k, n in enumerate(path)]
    if path:
        turns.insert(1, Turn(speaker="callee", text="好", intent="affirm", start_s=0.5))
    return CallOutcome(
        call_id=f"c{i}",
        to=f"+86138{i:08d}",
        disposition=disp,
        grade=grade,
        started_at=T0,
        answered_at=answered,
        ended_at=(answered or T0) + timedelta(seconds=talk),
        turns=turns,
        last_node=path[-1] if path else None,
        billed_s=60 if talk else 0,
        cost=0.08 if talk else 0.0,
    )


def test_figures_and_funnel() -> None:
    outs = [
        call(1, Disposition.ANSWERED, ("greet", "detail", "booked"), grade="A", talk=40),
        call(2, Disposition.ANSWERED, ("greet", "detail"), grade="B", talk=30),
        call(3, Disposition.ANSWERED, ("greet",), grade="D", talk=5),
        call(4, Disposition.NO_ANSWER),
        call(5, Disposition.BUSY),
        call(6, Disposition.FAILED),  # infrastructure: not dialed at the callee
    ]
    r = daily_report(
        outs, campaign="c", day=date(2026, 3, 2), timezone="Asia/Shanghai", budget=1.0, spent_total=0.5
    )
    assert (r.dialed, r.connected, r.connect_rate, r.interested) == (5, 3, 0.6, 2)
    assert r.dispositions["failed"] == 1 and r.grades == {"A": 1, "B": 1, "C": 2, "D": 1}
    assert r.intents == {"affirm": 3}
    assert r.billed_min == 3.0 and r.cost == 0.24 and r.talk_s == 75.0
    assert r.budget_used == 0.5
    assert [(s.node, s.reached, s.ended_here) for s in r.funnel] == [
        ("greet", 3, 1),
        ("detail", 2, 1),
        ("booked", 1, 1),
    ]
    assert r.funnel[0].drop_off == round(1 / 3, 4)


def test_empty_day() -> None:
    r = daily_report([], campaign="c", day=date(2026, 3, 2), timezone="Asia/Shanghai")
    assert r.dialed == 0 and r.connect_rate is None and r.funnel == [] and r.budget_used is None
