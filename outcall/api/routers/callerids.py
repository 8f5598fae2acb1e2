"""/api/v1/caller-ids: health of each trunk's caller-ID pool (answer rate, short calls, carrier blocks,
quarantine), as the scheduler last stored it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from engine.campaign.callerid import CallerIdHealth
from outcall.api.deps import CtxDep, Reader
from outcall.callerids import CallerIds

router = APIRouter(prefix="/api/v1/caller-ids", tags=["caller-ids"])


@router.get("", response_model=dict[str, list[CallerIdHealth]])
def caller_id_health(
    c: CtxDep,
    who: Reader,
    trunk: Annotated[str | None, Query(description="one trunk; absent: all")] = None,
) -> dict[str, list[CallerIdHealth]]:
    return CallerIds(c.settings.all_trunks(), c.settings.caller_ids, c.store).health(trunk)
