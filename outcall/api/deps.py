"""Shared API dependencies: the app context, bearer-token auth with roles, audit, pagination."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from gateway.store.auth import AuthStore
from gateway.store.campaigns import CampaignStore
from gateway.store.reports import Reports
from outcall.api.problems import Problem
from outcall.dialplan_library import DialplanLibrary
from outcall.masking import mask
from outcall.settings import Settings

T = TypeVar("T")


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    DESIGNER = "designer"
    VIEWER = "viewer"


READ = frozenset(Role)
CAMPAIGNS = frozenset({Role.ADMIN, Role.MANAGER})
DIALPLANS = frozenset({Role.ADMIN, Role.DESIGNER})
ADMIN = frozenset({Role.ADMIN})
ENV_TOKEN_ACTOR = "env:OUTCALL_API_TOKEN"


class SchedulerView(Protocol):
    """What the API sees of the campaign scheduler that `outcall serve` runs (absent in tests)."""

    def active_calls(self) -> int: ...

    def running(self) -> list[str]: ...

    def wake(self) -> None: ...


@dataclass
class Context:
    settings: Settings
    store: CampaignStore
    auth: AuthStore
    reports: Reports
    library: DialplanLibrary
    scheduler: SchedulerView | None = None
    started: float = field(default_factory=time.monotonic)
    _touched: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, token_id: str, every_s: float = 60.0) -> None:
        """Record last use of a token, at most once a minute (a write per request would contend)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(token_id, -1e9) < every_s:
                return
            self._touched[token_id] = now
        self.auth.touch(token_id)


@dataclass(frozen=True)
class Principal:
    actor: str  # token name (or env:OUTCALL_API_TOKEN)
    role: Role
    token_id: str | None = None

    @property
    def masked(self) -> bool:
        return self.role is Role.VIEWER

    def view(self, data: Any) -> Any:
        """JSON-able data as this principal may see it (phone numbers masked for viewers)."""
        return mask(data) if self.masked else data


def ctx(request: Request) -> Context:
    c: Context = request.app.state.ctx
    return c


CtxDep = Annotated[Context, Depends(ctx)]
_bearer = HTTPBearer(auto_error=False, description="a token from `outcall token create` or OUTCALL_API_TOKEN")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def principal(
    request: Request, c: CtxDep, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Who is calling. Mutating requests are audited as `token.use` (who, what, when)."""
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if cred is None:
        raise Problem(401, "missing bearer token (Authorization: Bearer <token>)", headers=unauthorized)
    env = c.settings.api_token.get_secret_value() if c.settings.api_token else None
    if env is not None and hmac.compare_digest(cred.credentials.encode(), env.encode()):
        who = Principal(ENV_TOKEN_ACTOR, Role.ADMIN)
    else:
        info = c.auth.verify(cred.credentials)
        if info is None:
            raise Problem(401, "unknown or revoked bearer token", headers=unauthorized)
        who = Principal(info.name, Role(info.role), info.id)
        c.touch(info.id)
    if request.method in _MUTATING:
        c.auth.audit(who.actor, who.role.value, "token.use", f"{request.method} {request.url.path}")
    return who


def require(roles: frozenset[Role]) -> Callable[..., Principal]:
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            raise Problem(403, f"role {who.role.value} may not do this (needs: {allowed})", kind="forbidden")
        return who

    return check


Reader = Annotated[Principal, Depends(require(READ))]
Manager = Annotated[Principal, Depends(require(CAMPAIGNS))]
Designer = Annotated[Principal, Depends(require(DIALPLANS))]
Admin = Annotated[Principal, Depends(require(ADMIN))]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = None


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=1000, description="items per page")] = 50,
    offset: Annotated[int, Query(ge=0, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


Paging = Annotated[PageParams, Depends(page_params)]


def page(request: Request, items: Sequence[T], total: int, p: PageParams) -> Page[T]:
    nxt = None
    if p.offset + len(items) < total:
        nxt = str(request.url.include_query_params(offset=p.offset + p.limit, limit=p.limit))
    return Page[T](items=list(items), total=total, limit=p.limit, offset=p.offset, next=nxt)
