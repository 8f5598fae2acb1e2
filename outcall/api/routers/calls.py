"""/api/v1/calls: outcomes with filters, one call, its transcript, its recording; /api/v1/stats."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.export import export_outcomes
from gateway.store.outbox import load_outcome
from gateway.store.reports import CallFilter
from outcall.api.deps import CAMPAIGNS, Context, CtxDep, Page, Paging, Principal, Reader, page, require
from outcall.api.problems import Problem
from outcall.api.schemas import CallSummary, Transcript

router = APIRouter(prefix="/api/v1", tags=["calls"])
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def call_filter(
    campaign: str | None = None,
    disposition: Disposition | None = None,
    grade: Annotated[str | None, Query(pattern="^[A-E]$")] = None,
    since: Annotated[datetime | None, Query(description="started at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="started before (ISO 8601)")] = None,
) -> CallFilter:
    return CallFilter(campaign, disposition.value if disposition else None, grade, since, until)


Filter = Annotated[CallFilter, Depends(call_filter)]


def _outcome(c: Context, call_id: str) -> CallOutcome:
    body = c.reports.outcome_body(call_id)
    if body is None:
        raise Problem(404, f"no call {call_id!r}", kind="not-found")
    return load_outcome(body)


@router.get("/calls", response_model=Page[CallSummary])
def list_calls(request: Request, c: CtxDep, who: Reader, p: Paging, f: Filter) -> Page[Any]:
    items, total = c.reports.calls(f, limit=p.limit, offset=p.offset)
    return page(request, who.view(items), total, p)


@router.get("/calls/export", response_class=FileResponse)
def export_calls(
    c: CtxDep,
    who: Reader,
    f: Filter,
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
    lang: Annotated[Literal["zh", "en"], Query()] = "zh",
) -> FileResponse:
    """Outcomes matching the filters as CSV (UTF-8 with BOM) or XLSX, Chinese or English headers. Phone
    numbers are masked for viewers. Audited."""
    fd, tmp = tempfile.mkstemp(prefix="outcall-export-", suffix=f".{format}")
    os.close(fd)
    n = export_outcomes(c.reports.iter_outcomes(f), Path(tmp), format, lang=lang, unmasked=not who.masked)
    c.auth.audit(
        who.actor,
        who.role.value,
        "calls.export",
        f.campaign or "",
        {"format": format, "rows": n, "masked": who.masked},
    )
    media = "text/csv; charset=utf-8" if format == "csv" else XLSX_MEDIA
    name = f"{f.campaign or 'calls'}.{format}"
    return FileResponse(tmp, media_type=media, filename=name, background=BackgroundTask(os.unlink, tmp))


@router.get("/calls/{call_id}", response_model=None)
def get_call(call_id: str, c: CtxDep, who: Reader) -> dict[str, Any]:
    """The full CallOutcome (see `outcall schema outcome`)."""
    out: dict[str, Any] = who.view(_outcome(c, call_id).model_dump(mode="json"))
    return out


@router.get("/calls/{call_id}/transcript", response_model=Transcript)
def get_transcript(call_id: str, c: CtxDep, who: Reader) -> dict[str, Any]:
    o = _outcome(c, call_id)
    out: dict[str, Any] = who.view(
        {"call_id": o.call_id, "turns": [t.model_dump(mode="json") for t in o.turns]}
    )
    return out


@router.get("/calls/{call_id}/recording", response_class=FileResponse)
def get_recording(
    call_id: str, c: CtxDep, who: Annotated[Principal, Depends(require(CAMPAIGNS))]
) -> FileResponse:
    """The call's recording (admin, manager). 404 when the call was not recorded. Audited."""
    o = _outcome(c, call_id)
    path = Path(o.recording) if o.recording else None
    if path is None or not path.is_file():
        raise Problem(404, f"call {call_id!r} has no recording", kind="no-recording")
    c.auth.audit(who.actor, who.role.value, "recording.download", call_id, {"file": path.name})
    media = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}.get(
        path.suffix.lower(), "application/octet-stream"
    )
    return FileResponse(path, media_type=media, filename=f"{call_id}{path.suffix}")


@router.get("/stats", tags=["stats"])
def stats(c: CtxDep, who: Reader, f: Filter) -> dict[str, Any]:
    """Connect rate, dispositions, grades, intents, talk time, per variant (with a two-proportion
    z-test p-value of the A+B grade rate against the largest variant), per hour (UTC), per caller ID."""
    out: dict[str, Any] = who.view(c.reports.stats(f))
    return out
