"""The FastAPI app. Only /healthz is open; everything under /api/v1 needs the bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.store.sqlite import SqliteStore
from outcall import __version__
from outcall.settings import Settings

_bearer = HTTPBearer(auto_error=False)


def create_app(settings: Settings, store: SqliteStore) -> FastAPI:
    app = FastAPI(title="outcall", version=__version__)

    def require_token(
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        expected = settings.api_token.get_secret_value() if settings.api_token else None
        if expected is None:
            raise HTTPException(503, "the API is disabled: set OUTCALL_API_TOKEN")
        if cred is None or not hmac.compare_digest(cred.credentials, expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    calls = APIRouter(prefix="/api/v1/calls", dependencies=[Depends(require_token)], tags=["calls"])

    @calls.get("")
    async def list_calls(
        campaign: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return [o.model_dump(mode="json") for o in await store.list_outcomes(campaign=campaign, limit=limit)]

    @calls.get("/{call_id}")
    async def get_call(call_id: str) -> dict[str, Any]:
        o = await store.get_outcome(call_id)
        if o is None:
            raise HTTPException(404, f"no call {call_id}")
        return o.model_dump(mode="json")

    app.include_router(calls)
    return app
