"""/api/v1/handoff: the hand-off to human agents (转人工) — agents' states, screen-pops and a live SSE feed.

A screen-pop is the `offered` update of a transfer: the summary the agent is whispered and the transcript
so far; it stays current while the agent talks and disappears when the call ends. Viewers get phone
numbers masked, like everywhere else."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from engine.call.transfer import HandoffUpdate
from engine.handoff import AgentState
from outcall.api.deps import CtxDep, Manager, Principal, Reader
from outcall.api.problems import Problem
from outcall.masking import mask
from outcall.runtime import shared_agent_directory, shared_handoff_board

router = APIRouter(prefix="/api/v1/handoff", tags=["handoff"])
log = logging.getLogger("outcall.api.handoff")
_dialing: set[asyncio.Task[Any]] = set()

KEEPALIVE_S = 15.0


def _public(update: HandoffUpdate, who: Principal) -> dict[str, Any]:
    data = update.model_dump(mode="json")
    return mask(data) if who.masked else data


@router.get("/agents")
def agents(c: CtxDep, who: Reader) -> list[dict[str, object]]:
    """Every configured agent with their state (available, busy, offline, wrap_up) and calls taken."""
    directory = shared_agent_directory(c.settings)
    return [] if directory is None else directory.snapshot()


class AgentStateChange(BaseModel):
    state: AgentState = Field(description="available | busy | offline | wrap_up")


@router.put("/agents/{agent_id}/state")
def set_agent_state(agent_id: str, body: AgentStateChange, c: CtxDep, who: Manager) -> dict[str, object]:
    """An agent logs in or out (available / offline) or is set busy from the console. Audited."""
    directory = shared_agent_directory(c.settings)
    if directory is None or agent_id not in directory.agents:
        raise Problem(404, f"no agent {agent_id!r}", kind="not-found")
    directory.set_state(agent_id, body.state)
    c.auth.audit(who.actor, who.role.value, "agent.state", agent_id, {"state": body.state})
    return next(a for a in directory.snapshot() if a.get("id") == agent_id)


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


class ListenIn(BaseModel):
    uri: str = Field(min_length=1, description="the supervisor's phone: sip:user@host[:port] or a number")
    ring_timeout_s: float = Field(30.0, gt=0, le=120)


class ListenStarted(BaseModel):
    call_id: str
    uri: str
    status: str = "dialing"


@router.post("/calls/{call_id}/listen", status_code=202, response_model=ListenStarted)
async def listen_in(call_id: str, body: ListenIn, c: CtxDep, who: Manager) -> ListenStarted:
    """Dial a supervisor who, on answering, hears both sides of the bridged call (and is not heard).
    The supervisor's leg ends with the call."""
    transferer = shared_handoff_board(c.settings).live.get(call_id)
    if transferer is None:
        raise Problem(404, f"call {call_id} is not bridged to an agent in this process", kind="not-found")

    async def dial() -> None:
        try:
            await transferer.listen_in(call_id, body.uri, ring_timeout=body.ring_timeout_s)
        except Exception as e:  # the supervisor not answering must not disturb the call
            log.warning("listen-in by %s to %s failed: %s", who.actor, call_id, e, extra={"call_id": call_id})

    task = asyncio.ensure_future(dial())
    _dialing.add(task)
    task.add_done_callback(_dialing.discard)
    return ListenStarted(call_id=call_id, uri=body.uri)
