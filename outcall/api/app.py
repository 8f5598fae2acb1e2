"""The FastAPI app. Only /healthz is open; /metrics and everything under /api/v1 need a bearer token
whose role allows the call (see outcall.api.deps). Errors are RFC 9457 problem+json. Built by
`create_app(settings, store)` from main; nothing is read at import time."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.store.auth import AuthStore
from gateway.store.campaigns import CampaignStore
from gateway.store.reports import Reports
from outcall import __version__
from outcall.api import problems
from outcall.api.deps import Context, SchedulerView
from outcall.api.routers import (
    admin,
    callerids,
    calls,
    campaigns,
    contacts,
    dialplans,
    dnc,
    handoff,
    health,
    wecom,
)
from outcall.dialplan_library import DialplanLibrary
from outcall.settings import Settings

DESCRIPTION = """
AI voice outbound calls: campaigns, call lists, DNC, dialplans, call outcomes and stats.

**Auth**: `Authorization: Bearer <token>`. Tokens come from `outcall token create --role R`
(stored hashed) or OUTCALL_API_TOKEN (admin). Roles: **viewer** reads (phone numbers masked),
**designer** edits and tests dialplans, **manager** runs campaigns, contacts and DNC,
**admin** everything, including tokens and the audit log.

**Errors**: `application/problem+json` (RFC 9457). **Lists**: `limit`/`offset` with `total` and `next`.
"""


def create_app(
    settings: Settings, store: CampaignStore, *, scheduler: SchedulerView | None = None
) -> FastAPI:
    app = FastAPI(title="outcall", version=__version__, description=DESCRIPTION)
    app.state.ctx = Context(
        settings=settings,
        store=store,
        auth=AuthStore(store),
        reports=Reports(store),
        library=DialplanLibrary(settings.dialplans_dir),
        scheduler=scheduler,
    )
    problems.install(app)
    for r in (health, campaigns, contacts, dnc, dialplans, calls, admin, callerids, handoff, wecom):
        app.include_router(r.router)
    _console(app)
    return app


def _console(app: FastAPI) -> None:
    """The web console: static assets shipped in the package, served at / (no CDN, no build step)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    from outcall.web import STATIC_DIR

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
