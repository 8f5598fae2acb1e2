"""/api/v1/dnc: the global ('' campaign) and per-campaign do-not-call lists. Changes are audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from outcall.api.deps import CtxDep, Manager, Page, Paging, Reader, page
from outcall.api.problems import Problem
from outcall.api.schemas import DncCreate, DncPublic
from outcall.contacts_import import normalise_phone
from outcall.masking import mask_phone

router = APIRouter(prefix="/api/v1/dnc", tags=["dnc"])


def _phone(raw: str) -> str:
    phone, why = normalise_phone(raw)
    if phone is None:
        raise Problem(422, why, kind="invalid-phone")
    return phone


@router.get("", response_model=Page[DncPublic])
def list_dnc(
    request: Request,
    c: CtxDep,
    who: Reader,
    p: Paging,
    campaign: Annotated[str | None, Query(description="'' for the global list; absent: all")] = None,
) -> Page[Any]:
    items = c.store.list_dnc_sync(campaign, limit=p.limit, offset=p.offset)
    for it in items:
        it["added_at"] = datetime.fromtimestamp(it["added_at"], UTC)
    return page(request, who.view(items), c.reports.dnc_count(campaign), p)


@router.post("", status_code=201, response_model=DncPublic)
def add_dnc(body: DncCreate, c: CtxDep, who: Manager) -> Any:
    phone = _phone(body.phone)
    now = datetime.now(UTC).timestamp()
    c.store.add_dnc_sync(phone, body.campaign, body.reason, now=now)
    c.auth.audit(
        who.actor, who.role.value, "dnc.add", phone, {"campaign": body.campaign, "reason": body.reason}
    )
    return {"phone": phone, "campaign": body.campaign, "reason": body.reason, "added_at": datetime.now(UTC)}


@router.delete("/{phone}", status_code=204)
def remove_dnc(phone: str, c: CtxDep, who: Manager, campaign: str = "") -> Response:
    number = _phone(phone)
    if not c.store.remove_dnc_sync(number, campaign):
        raise Problem(404, f"{mask_phone(number)} is not on that DNC list", kind="not-found")
    c.auth.audit(who.actor, who.role.value, "dnc.remove", number, {"campaign": campaign})
    return Response(status_code=204)
