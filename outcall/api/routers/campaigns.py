"""/api/v1/campaigns: CRUD, start/pause/resume/stop, stats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from engine.campaign.scheduler import CampaignConfig, CampaignStatus
from engine.errors import ConfigError, DialplanError
from engine.reporting import DailyReport
from gateway.store.reports import CallFilter
from outcall import daily_report
from outcall.api.deps import Context, CtxDep, Manager, Page, Paging, Reader, page
from outcall.api.problems import Problem
from outcall.api.schemas import CampaignCreate, CampaignPublic, CampaignStats, CampaignUpdate
from outcall.campaign_cli import transition

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])


def get_campaign(c: Context, name: str) -> dict[str, Any]:
    found = c.reports.campaign(name)
    if found is None:
        raise Problem(404, f"no campaign named {name!r}", kind="not-found")
    return found


def _check_dialplans(c: Context, cfg: CampaignConfig) -> None:
    for plan in [cfg.dialplan, *cfg.variants]:
        try:
            c.library.resolve(plan)
        except DialplanError as e:
            raise Problem(422, str(e), kind="unknown-dialplan") from e


@router.get("", response_model=Page[CampaignPublic])
def list_campaigns(
    request: Request, c: CtxDep, who: Reader, p: Paging, status: CampaignStatus | None = None
) -> Page[Any]:
    items, total = c.reports.campaigns(
        status=status.value if status else None, limit=p.limit, offset=p.offset
    )
    return page(request, items, total, p)


@router.post("", status_code=201, response_model=CampaignPublic)
def create_campaign(body: CampaignCreate, c: CtxDep, who: Manager) -> dict[str, Any]:
    cfg = CampaignConfig.model_validate(body.model_dump())
    _check_dialplans(c, cfg)
    try:
        c.store.create_campaign_sync(cfg, now=datetime.now(UTC).timestamp())
    except ConfigError as e:
        raise Problem(409, str(e.args[0]), kind="conflict") from e
    return get_campaign(c, cfg.name)


@router.get("/{name}", response_model=CampaignPublic)
def read_campaign(name: str, c: CtxDep, who: Reader) -> dict[str, Any]:
    return get_campaign(c, name)


@router.patch("/{name}", response_model=CampaignPublic)
def update_campaign(name: str, body: CampaignUpdate, c: CtxDep, who: Manager) -> dict[str, Any]:
    cur: CampaignConfig = get_campaign(c, name)["config"]
    try:
        cfg = CampaignConfig.model_validate({**cur.model_dump(), **body.model_dump(exclude_unset=True)})
    except ValidationError as e:
        raise Problem(422, str(e), kind="validation") from e
    _check_dialplans(c, cfg)
    c.store.update_campaign_sync(cfg)
    return get_campaign(c, name)


@router.delete("/{name}", status_code=204)
def delete_campaign(name: str, c: CtxDep, who: Manager) -> Response:
    if get_campaign(c, name)["status"] == CampaignStatus.RUNNING.value:
        raise Problem(409, f"campaign {name!r} is running", kind="conflict", hint="stop it first")
    c.store.delete_campaign_sync(name)
    return Response(status_code=204)


def _transition(c: Context, name: str, verb: str) -> dict[str, Any]:
    get_campaign(c, name)
    try:
        transition(c.store, name, verb)
    except ConfigError as e:
        raise Problem(409, str(e.args[0]), kind="bad-transition", hint=e.hint) from e
    if c.scheduler is not None:
        c.scheduler.wake()
    return get_campaign(c, name)


@router.post("/{name}/start", response_model=CampaignPublic)
def start_campaign(name: str, c: CtxDep, who: Manager) -> dict[str, Any]:
    return _transition(c, name, "start")


@router.post("/{name}/pause", response_model=CampaignPublic)
def pause_campaign(name: str, c: CtxDep, who: Manager) -> dict[str, Any]:
    return _transition(c, name, "pause")


@router.post("/{name}/resume", response_model=CampaignPublic)
def resume_campaign(name: str, c: CtxDep, who: Manager) -> dict[str, Any]:
    return _transition(c, name, "resume")


@router.post("/{name}/stop", response_model=CampaignPublic)
def stop_campaign(name: str, c: CtxDep, who: Manager) -> dict[str, Any]:
    return _transition(c, name, "stop")


@router.get("/{name}/stats", response_model=CampaignStats)
def campaign_stats(name: str, c: CtxDep, who: Reader) -> dict[str, Any]:
    get_campaign(c, name)
    stats = c.store.campaign_stats_sync(name)
    stats["calls"] = c.reports.stats(CallFilter(campaign=name))
    out: dict[str, Any] = who.view(stats)
    return out


@router.get("/{name}/report", response_model=DailyReport)
def campaign_daily_report(
    name: str,
    c: CtxDep,
    who: Reader,
    day: Annotated[date | None, Query(description="local day in the campaign's zone; default today")] = None,
    format: Annotated[Literal["json", "csv", "md"], Query()] = "json",
) -> Any:
    """The daily report (日报): dialed, connected, grades, intents, talk/billed time, cost, budget used and
    the node funnel. `format=csv` for Excel, `md` for the WeCom robot's markdown."""
    get_campaign(c, name)
    r = daily_report.build(c.store, name, day)
    if format == "csv":
        return Response(
            daily_report.to_csv(r),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-{r.day.isoformat()}.csv"'},
        )
    if format == "md":
        return Response(daily_report.to_markdown(r), media_type="text/markdown; charset=utf-8")
    return r


@router.get("/{name}/events", response_class=StreamingResponse)
async def campaign_events(name: str, c: CtxDep, who: Reader, interval_s: float = 2.0) -> StreamingResponse:
    """Live dashboard feed (Server-Sent Events): a `stats` event whenever the figures change (checked
    every `interval_s`), a comment line as keep-alive otherwise."""
    await asyncio.to_thread(get_campaign, c, name)
    every = min(max(interval_s, 0.5), 30.0)

    def snapshot() -> dict[str, Any]:
        stats = c.store.campaign_stats_sync(name)
        stats["calls"] = c.reports.stats(CallFilter(campaign=name))
        stats["spent"] = c.store.spent_sync(name)
        out: dict[str, Any] = who.view(stats)
        return out

    async def stream() -> AsyncIterator[str]:
        last = ""
        quiet = 0.0
        while True:
            data = json.dumps(await asyncio.to_thread(snapshot), ensure_ascii=False, default=str)
            if data != last:
                last, quiet = data, 0.0
                yield f"event: stats\ndata: {data}\n\n"
            elif quiet >= 15.0:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(every)
            quiet += every

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.post("/{name}/report/post", status_code=202)
async def post_daily_report(
    name: str,
    c: CtxDep,
    who: Manager,
    robot: Annotated[str, Query(description="a robot named in OUTCALL_WECOM_ROBOT_KEYS")],
    day: Annotated[date | None, Query()] = None,
) -> dict[str, Any]:
    """Post the daily report (markdown) to a WeCom group robot."""
    await asyncio.to_thread(get_campaign, c, name)
    r = await asyncio.to_thread(daily_report.build, c.store, name, day)
    try:
        await daily_report.post_to_robot(c.settings, robot, daily_report.to_markdown(r))
    except ConfigError as e:
        raise Problem(422, str(e), kind="unknown-robot", hint=e.hint) from e
    except Exception as e:  # the robot service said no (rate limit, bad key): the caller may retry
        raise Problem(502, f"WeCom robot refused the report: {e}", kind="robot-failed") from e
    await asyncio.to_thread(c.auth.audit, who.actor, who.role.value, "report.post", name, {"robot": robot})
    return {"campaign": name, "day": r.day.isoformat(), "robot": robot, "posted": True}
