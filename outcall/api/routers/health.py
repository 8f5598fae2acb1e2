"""/healthz (open; no database or model touched) and /metrics (Prometheus text; any role's token)."""

from __future__ import annotations

import time
from collections import defaultdict

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from outcall import __version__
from outcall.api.deps import CtxDep, Reader
from outcall.api.schemas import Health

router = APIRouter(tags=["health"])

PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=Health)
async def healthz(c: CtxDep) -> Health:
    return Health(status="ok", version=__version__, uptime_s=round(time.monotonic() - c.started, 3))


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}" if kv else ""


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {value:g}")


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(c: CtxDep, who: Reader) -> PlainTextResponse:
    """Prometheus exposition format. Needs a bearer token (any role): scrape with `authorization:`
    `credentials:` in prometheus.yml. Counters are computed from the store, so they survive restarts."""
    m = c.reports.metrics()
    t = _Text()
    t.metric("outcall_up", "gauge", "1 while the API answers", [({"version": __version__}, 1)])
    t.metric(
        "outcall_uptime_seconds",
        "gauge",
        "seconds since the API started",
        [({}, round(time.monotonic() - c.started, 3))],
    )
    by_disp: dict[tuple[str, str], float] = defaultdict(float)
    by_grade: dict[tuple[str, str], float] = defaultdict(float)
    talk: dict[str, float] = defaultdict(float)
    for campaign, disp, grade, n, talk_s in m["calls"]:
        by_disp[(campaign, disp)] += n
        by_grade[(campaign, grade)] += n
        talk[campaign] += talk_s
    t.metric(
        "outcall_calls_total",
        "counter",
        "finished calls by campaign and disposition",
        [({"campaign": k[0], "disposition": k[1]}, v) for k, v in sorted(by_disp.items())],
    )
    t.metric(
        "outcall_calls_by_grade_total",
        "counter",
        "finished calls by campaign and grade (A-E)",
        [({"campaign": k[0], "grade": k[1]}, v) for k, v in sorted(by_grade.items())],
    )
    t.metric(
        "outcall_talk_seconds_total",
        "counter",
        "answered talk time by campaign",
        [({"campaign": k}, round(v, 3)) for k, v in sorted(talk.items())],
    )
    active = c.scheduler.active_calls() if c.scheduler is not None else 0
    t.metric("outcall_active_calls", "gauge", "calls in flight in this process", [({}, active)])
    t.metric(
        "outcall_claims_active",
        "gauge",
        "numbers claimed (being dialed) across all nodes",
        [({}, m["claims"])],
    )
    t.metric(
        "outcall_campaigns",
        "gauge",
        "campaigns by status",
        [({"status": k}, v) for k, v in sorted(m["campaigns"].items())],
    )
    t.metric(
        "outcall_contacts",
        "gauge",
        "contacts by campaign and state",
        [({"campaign": cp, "state": st}, n) for cp, st, n in m["contacts"]],
    )
    t.metric(
        "outcall_dnc_entries", "gauge", "do-not-call entries (global and per campaign)", [({}, m["dnc"])]
    )
    return PlainTextResponse("\n".join(t.lines) + "\n", media_type=PROM_CONTENT_TYPE)
