"""Per-campaign, per-day figures from outcomes: the daily report (日报) and the node funnel designers use.

Pure: it folds CallOutcome records (however they were read) into a DailyReport. The funnel counts, per
dialplan node, the answered calls that reached it and the calls that ended there (drop-off), in the
order calls first reach the nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel, Field

from engine.dispositions import Disposition
from engine.outcome import CallOutcome

SUCCESS_GRADES = frozenset({"A", "B"})


class FunnelStep(BaseModel):
    node: str
    reached: int = Field(description="answered calls that reached this node")
    ended_here: int = Field(description="answered calls whose last node was this one")
    drop_off: float | None = Field(description="ended_here / reached")


class DailyReport(BaseModel):
    campaign: str
    day: date
    timezone: str
    dialed: int = Field(description="attempts at callees (infrastructure failures excluded)")
    connected: int
    connect_rate: float | None
    dispositions: dict[str, int]
    grades: dict[str, int]
    intents: dict[str, int]
    interested: int = Field(description="grade A or B")
    talk_s: float
    billed_min: float
    cost: float
    budget: float | None = None
    spent_total: float | None = Field(None, description="the campaign's spend to date")
    budget_used: float | None = Field(None, description="spent_total / budget")
    funnel: list[FunnelStep]


def daily_report(
    outcomes: Iterable[CallOutcome],
    *,
    campaign: str,
    day: date,
    timezone: str,
    budget: float | None = None,
    spent_total: float | None = None,
) -> DailyReport:
    disp: Counter[str] = Counter()
    grades: Counter[str] = Counter()
    intents: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    first_seen: dict[str, tuple[int, int]] = {}  # node -> (position in its call, order seen): funnel order
    talk = 0.0
    billed = 0
    cost = 0.0
    for o in outcomes:
        disp[o.disposition.value] += 1
        if o.disposition is Disposition.FAILED:
            continue
        grades[o.grade] += 1
        talk += o.talk_s
        billed += o.billed_s
        cost += o.cost
        for t in o.turns:
            if t.speaker == "callee" and t.intent:
                intents[t.intent] += 1
        if o.disposition is not Disposition.ANSWERED:
            continue
        path: list[str] = []
        for t in o.turns:
            if t.speaker == "bot" and t.node and t.node not in path:
                path.append(t.node)
        for i, n in enumerate(path):
            reached[n] += 1
            first_seen.setdefault(n, (i, len(first_seen)))
        last = o.last_node or (path[-1] if path else None)
        if last:
            ended[last] += 1
            if last not in reached:
                reached[last] += 1
                first_seen.setdefault(last, (len(path), len(first_seen)))
    dialed = sum(n for k, n in disp.items() if k != Disposition.FAILED.value)
    connected = disp.get(Disposition.ANSWERED.value, 0)
    order = sorted(reached, key=lambda n: first_seen[n])
    return DailyReport(
        campaign=campaign,
        day=day,
        timezone=timezone,
        dialed=dialed,
        connected=connected,
        connect_rate=round(connected / dialed, 4) if dialed else None,
        dispositions=dict(disp.most_common()),
        grades=dict(sorted(grades.items())),
        intents=dict(intents.most_common()),
        interested=sum(grades[g] for g in SUCCESS_GRADES),
        talk_s=round(talk, 3),
        billed_min=round(billed / 60, 2),
        cost=round(cost, 4),
        budget=budget,
        spent_total=None if spent_total is None else round(spent_total, 4),
        budget_used=round(spent_total / budget, 4) if budget and spent_total is not None else None,
        funnel=[
            FunnelStep(
                node=n,
                reached=reached[n],
                ended_here=ended[n],
                drop_off=round(ended[n] / reached[n], 4) if reached[n] else None,
            )
            for n in order
        ],
    )
