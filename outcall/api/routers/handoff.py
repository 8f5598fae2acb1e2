"""/handoff: the hand-off to human agents (转人工) — agents' states, screen-pops and a live SSE feed.

A screen-pop is the `offered` update of a transfer: the summary the agent is whispered and the transcript
so far; it stays current while the agent talks and disappears when the call ends. Viewers get phone
numbers masked, like everywhere else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from engine.call.transfer import HandoffUpdate
from outcall.api.deps import CtxDep, Principal, Reader
from outcall.api.masking import mask
from outcall.runtime import shared_agent_directory, shared_handoff_board

router = APIRouter(prefix="/handoff", tags=["handoff"])

KEEPALIVE_S = 15.0


def _public(update: HandoffUpdate, who: Principal) -> dict[str, Any]:
    data = update.model_dump(mode="json")
    return mask(data) if who.masked else data


@router.get("/agents")
def agents(c: CtxDep, who: Reader) -> list[dict[str, object]]:
    """Every configured agent with their state (available, busy, offline, wrap_up) and calls taken."""
    directory = shared_agent_directory(c.settings)
    return [] if directory is None else directory.snapshot()


@router.get("/screen-pops")
def screen_pops(c: CtxDep, who: Reader) -> list[dict[str, Any]]:
    """The current screen-pop of every agent on a transferred call."""
    return [_public(u, who) for u in shared_handoff_board(c.settings).current.values()]


@router.get("/events", response_class=StreamingResponse)
async def events(c: CtxDep, who: Reader) -> StreamingResponse:
    """Server-sent events: first the current screen-pops (event `offered`/`bridged`), then every update
    as it happens (`offered`, `bridged`, `ended`); a comment line every 15 s keeps proxies from closing."""
    board = shared_handoff_board(c.settings)

    async def stream() -> AsyncIterator[str]:
        for u in list(board.current.values()):
            yield f"event: {u.type}\ndata: {json.dumps(_public(u, who), ensure_ascii=False)}\n\n"
        async for upd in board.subscribe(keepalive_s=KEEPALIVE_S):
            if upd is None:
                yield ": keepalive\n\n"
            else:
                yield f"event: {upd.type}\ndata: {json.dumps(_public(upd, who), ensure_ascii=False)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
