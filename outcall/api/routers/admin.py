"""/api/v1/tokens and /api/v1/audit (admin only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response

from outcall.api.deps import Admin, CtxDep, Page, Paging, Reader, page
from outcall.api.problems import Problem
from outcall.api.schemas import AuditEntry, Me, TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/me", response_model=Me, tags=["auth"])
def me(who: Reader) -> Me:
    """Who the bearer token is and its role (the console hides what the role may not do)."""
    return Me(actor=who.actor, role=who.role.value)


@router.get("/tokens", response_model=Page[TokenPublic])
def list_tokens(request: Request, c: CtxDep, who: Admin, p: Paging) -> Page[Any]:
    tokens = [asdict(t) for t in c.auth.list_tokens()]
    return page(request, tokens[p.offset : p.offset + p.limit], len(tokens), p)


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, c: CtxDep, who: Admin) -> dict[str, Any]:
    """The token is in this response only; the store keeps its SHA-256."""
    tid, token = c.auth.create_token(body.role, body.name)
    info = next(t for t in c.auth.list_tokens() if t.id == tid)
    c.auth.audit(who.actor, who.role.value, "token.create", tid, {"role": body.role, "name": info.name})
    return {**asdict(info), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, c: CtxDep, who: Admin) -> Response:
    if not c.auth.revoke_token(token_id):
        raise Problem(404, f"no live token {token_id!r}", kind="not-found")
    c.auth.audit(who.actor, who.role.value, "token.revoke", token_id)
    return Response(status_code=204)


@router.get("/audit", response_model=Page[AuditEntry])
def list_audit(
    request: Request, c: CtxDep, who: Admin, p: Paging, action: str | None = None, actor: str | None = None
) -> Page[Any]:
    """Who did what when: exports, recording downloads, DNC changes, token use (mutating requests)."""
    items, total = c.auth.list_audit(action=action, actor=actor, limit=p.limit, offset=p.offset)
    return page(request, items, total, p)
