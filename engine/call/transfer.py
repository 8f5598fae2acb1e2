"""The hand-off of a live call to a human agent: hold, dial, whisper, bridge.

    result = await Transferer(directory, lines, synthesizer, bridge_factory).run(callee, "sales", summary,
                                                                               callee_gone)

1. The callee hears the queue's hold prompt in a loop.
2. Agents are dialled one after another (longest idle first) as a second leg; an agent who does not answer
   within the queue's ring_timeout_s is cancelled and the next is tried, until timeout_s has passed.
3. The agent who answers hears a one-line summary (whisper: name, intent, grade, what was asked) that the
   callee does not hear; then the hold stops and the two legs' media are bridged by the gateway.
4. The bridge runs until either side hangs up; the other side is then ended by the session.

No agent within timeout_s (or the queue closed): the result says `no_agent` and the session goes on with
the transfer node's fallback (apologise, capture a callback time). The callee hanging up during the hold
cancels the agent leg at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from engine.audio import PCM, SAMPLE_RATE
from engine.call.playback import PlaybackHandle
from engine.clock import Clock, RealClock
from engine.errors import TelephonyError
from engine.handoff import AgentDirectory, AgentPick, QueueConfig
from engine.ports import CallLeg, LineProvider, Synthesizer

log = logging.getLogger("outcall.transfer")

T = TypeVar("T")

TransferStatus = Literal["bridged", "no_agent", "callee_hung_up", "failed"]

#: silence between two rounds of the hold prompt
HOLD_GAP_S = 1.0


class Bridge(Protocol):
    """Joins two answered legs' media (gateway.bridge.MediaBridge). `run()` returns when either leg's
    media ends or `stop()` is called; `stats()` reports frames relayed each way."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def listen(self, leg: CallLeg) -> None:
        """A supervisor's leg hears both sides mixed and is not heard."""
        ...

    def unlisten(self, leg: CallLeg) -> None: ...


BridgeFactory = Callable[[CallLeg, CallLeg], Bridge]

HandoffKind = Literal["offered", "bridged", "ended"]


class HandoffUpdate(BaseModel):
    """One step of a hand-off, for the agent's screen-pop and the supervisors' console (API/SSE).
    `offered` carries the summary the agent is whispered and the transcript so far."""

    type: HandoffKind
    call_id: str
    queue: str
    agent: str | None = None
    at: datetime
    wait_s: float = 0.0
    bridged_s: float = 0.0
    summary: dict[str, Any] = Field(default_factory=dict)
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    status: str | None = None
    ended_by: str | None = None


@dataclass
class TransferResult:
    status: TransferStatus
    queue: str
    agent: str | None = None
    agent_uri: str | None = None
    agent_call_id: str | None = None
    wait_s: float = 0.0
    bridged_s: float = 0.0
    ended_by: Literal["agent", "callee"] | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    whisper: str | None = None


def whisper_line(template: str, values: Mapping[str, Any]) -> str:
    """The queue's whisper template with {name} {intent} {grade} {asked} ... filled (missing: blank)."""

    class _Blank(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return ""

    try:
        return template.format_map(_Blank({k: ("" if v is None else v) for k, v in values.items()}))
    except (ValueError, IndexError, AttributeError) as e:  # a broken template must not lose the call
        log.warning("whisper template %r unusable (%s): using the plain summary", template, e)
        return " ".join(str(v) for v in values.values() if v)


class HandoffBoard:
    """The process's feed of hand-offs for the console: the current screen-pop per agent, and a stream of
    every update to any number of subscribers (API/SSE). A subscriber that falls behind loses the oldest."""

    def __init__(self, *, queue_size: int = 100) -> None:
        self.current: dict[str, HandoffUpdate] = {}
        #: bridged calls by call id -> the Transferer running them (listen-in goes through it)
        self.live: dict[str, Transferer] = {}
        self._subs: set[asyncio.Queue[HandoffUpdate]] = set()
        self._size = queue_size

    def publish(self, update: HandoffUpdate) -> None:
        if update.agent is not None:
            if update.type == "ended":
                self.current.pop(update.agent, None)
            else:
                self.current[update.agent] = update
        for q in self._subs:
            if q.full():
                q.get_nowait()
            q.put_nowait(update)

    async def subscribe(self, *, keepalive_s: float | None = None) -> AsyncIterator[HandoffUpdate | None]:
        """Updates as they happen; with keepalive_s, None after that many idle seconds."""
        q: asyncio.Queue[HandoffUpdate] = asyncio.Queue(self._size)
        self._subs.add(q)
        try:
            while True:
                if keepalive_s is None:
                    yield await q.get()
                    continue
                try:
                    yield await asyncio.wait_for(q.get(), keepalive_s)
                except TimeoutError:
                    yield None
        finally:
            self._subs.discard(q)


class Transferer:
    def __init__(
        self,
        directory: AgentDirectory,
        lines: LineProvider,
        synthesizer: Synthesizer,
        bridge: BridgeFactory,
        *,
        clock: Clock | None = None,
        caller_id: str | None = None,
        trunk: str | None = None,
        voice: str | None = None,
        hold_audio: Callable[[QueueConfig], Awaitable[PCM | None]] | None = None,
        on_update: Callable[[HandoffUpdate], None] | None = None,
    ) -> None:
        self.directory = directory
        self.lines = lines
        self.synthesizer = synthesizer
        self.bridge_factory = bridge
        self.clock = clock or RealClock()
        self.caller_id = caller_id
        self.trunk = trunk
        self.voice = voice
        #: loads a queue's recorded hold audio (hold_wav); None or a None result: synthesise hold_prompt
        self.hold_audio = hold_audio
        #: bridges in progress (for the console and the benchmark)
        self.active: dict[str, Bridge] = {}
        #: the screen-pop feed: offered (the agent answered: summary + transcript so far), bridged, ended
        self.on_update = on_update
        #: the latest screen-pop per agent while their call lasts (what an API/SSE endpoint would serve)
        self.screen_pops: dict[str, HandoffUpdate] = {}
        #: supervisors' legs listening in, per bridged call
        self.listeners: dict[str, list[CallLeg]] = {}
        #: where live transfers register themselves (so the API can find a call to listen in on)
        self.board: HandoffBoard | None = None
        self._cleanup: set[asyncio.Future[None]] = set()

    def _update(self, kind: HandoffKind, cid: str, result: TransferResult, **extra: Any) -> None:
        upd = HandoffUpdate(
            type=kind,
            call_id=cid,
            queue=result.queue,
            agent=result.agent,
            at=self.clock.now(),
            wait_s=result.wait_s,
            bridged_s=result.bridged_s,
            **extra,
        )
        if result.agent is not None:
            if kind == "ended":
                self.screen_pops.pop(result.agent, None)
            else:
                self.screen_pops[result.agent] = upd
        if self.on_update is not None:
            try:
                self.on_update(upd)
            except Exception:  # a console that fails must never break the call
                log.exception("handoff update listener failed", extra={"call_id": cid})

    async def run(
        self,
        callee: CallLeg,
        queue: str,
        summary: Mapping[str, Any],
        callee_gone: asyncio.Event,
        *,
        transcript: Sequence[Mapping[str, Any]] = (),
    ) -> TransferResult:
        """Hold, dial, whisper, bridge (see module docstring). `transcript`: the conversation so far, for
        the agent's screen-pop."""
        cid = callee.info.call_id
        t0 = self.clock.monotonic()
        q = self.directory.queue(queue)
        if q is None:
            log.warning("transfer to unknown queue %r: fallback", queue, extra={"call_id": cid})
            return TransferResult("no_agent", queue, reason=f"no queue named {queue!r}")
        hold = asyncio.ensure_future(self._hold(callee, q))
        picked: tuple[AgentPick, CallLeg, TransferResult] | TransferResult | None = None
        try:
            picked = await self._find_agent(callee, q, callee_gone, t0)
        finally:
            if picked is None or isinstance(picked, TransferResult):
                hold.cancel()
                callee.clear()
        if isinstance(picked, TransferResult):
            return picked
        pick, agent, result = picked
        try:
            # whisper to the agent only; the callee keeps hearing the hold prompt meanwhile
            line = whisper_line(q.whisper, summary)
            result.whisper = line
            self._update(
                "offered", cid, result, summary=dict(summary), transcript=[dict(t) for t in transcript]
            )
            done: object | None = True
            try:
                pcm: PCM | None = await self.synthesizer.render(line, voice=self.voice)
            except Exception as e:  # no whisper is better than no transfer
                log.warning("whisper not rendered (%s): bridging without it", e, extra={"call_id": cid})
                pcm = None
            if pcm is not None:
                handle = agent.play(pcm, label="whisper")
                done = await self._race(handle.wait(), callee_gone, agent, None)
            hold.cancel()
            callee.clear()
            result.wait_s = round(self.clock.monotonic() - t0, 3)
            if done is None:  # someone hung up during the whisper
                result.status = "callee_hung_up" if callee_gone.is_set() else "failed"
                result.ended_by = "callee" if callee_gone.is_set() else "agent"
                result.reason = "hung up during the whisper"
                await self._end(agent)
                return result
            result.status = "bridged"
            bridge = self.bridge_factory(callee, agent)
            self.active[cid] = bridge
            if self.board is not None:
                self.board.live[cid] = self
            b0 = self.clock.monotonic()
            log.info("bridging with agent %s after %.1f s", pick.label, result.wait_s, extra={"call_id": cid})
            self._update("bridged", cid, result)
            try:
                await bridge.run()
            finally:
                self.active.pop(cid, None)
                if self.board is not None:
                    self.board.live.pop(cid, None)
                bridge.stop()
                for listener in self.listeners.pop(cid, []):
                    self._end_later(listener)
            result.bridged_s = round(self.clock.monotonic() - b0, 3)
            agent_ended = agent.info.ended_at is not None or agent.info.hangup_by is not None
            result.ended_by = "callee" if callee_gone.is_set() and not agent_ended else "agent"
            if result.ended_by == "callee":
                await self._end(agent)
            return result
        except BaseException:
            self._end_later(agent)  # never leave the agent's phone connected
            raise
        finally:
            hold.cancel()
            self.directory.release(pick, talked=result.status == "bridged")
            self._update("ended", cid, result, status=result.status, ended_by=result.ended_by)

    async def listen_in(
        self, call_id: str, target: str, *, ring_timeout: float = 30.0, trunk: str | None = None
    ) -> CallLeg:
        """Dial a supervisor and, once they answer, let them hear the bridged call `call_id`.
        Raises KeyError when the call is not bridged (any more), TelephonyError when nobody answers."""
        if call_id not in self.active:
            raise KeyError(call_id)
        leg = await self.lines.originate(
            target,
            caller_id=self.caller_id,
            trunk=trunk or self.trunk,
            headers={"X-Outcall-Listen": call_id},
            ring_timeout=ring_timeout,
        )
        try:
            await leg.wait_answered()
        except BaseException:
            self._end_later(leg)
            raise
        bridge = self.active.get(call_id)
        if bridge is None:  # the call ended while the supervisor's phone rang
            await self._end(leg)
            raise KeyError(call_id)
        bridge.listen(leg)
        self.listeners.setdefault(call_id, []).append(leg)
        log.info("supervisor %s listening in", target, extra={"call_id": call_id})
        return leg

    # --- steps --------------------------------------------------------------------------------------

    async def _hold(self, callee: CallLeg, q: QueueConfig) -> None:
        pcm: PCM | None = None
        if self.hold_audio is not None:
            try:
                pcm = await self.hold_audio(q)
            except Exception as e:  # a broken hold recording: say the hold prompt instead
                log.warning("hold audio of queue %s unusable (%s): synthesising the prompt", q.name, e)
        if pcm is None:
            pcm = await self.synthesizer.render(q.hold_prompt, voice=self.voice)
        gap = np.zeros(int(HOLD_GAP_S * SAMPLE_RATE), np.int16)
        looped = np.concatenate([np.asarray(pcm, np.int16), gap])
        handle: PlaybackHandle | None = None
        try:
            while True:
                handle = callee.play(looped, label="hold")
                await handle.wait()
                if handle.interrupted:
                    return
        finally:
            if handle is not None and not handle.done:
                handle.interrupt()

    async def _find_agent(
        self, callee: CallLeg, q: QueueConfig, callee_gone: asyncio.Event, t0: float
    ) -> tuple[AgentPick, CallLeg, TransferResult] | TransferResult:
        cid = callee.info.call_id
        result = TransferResult("no_agent", q.name)
        deadline = t0 + q.timeout_s
        tried: set[str] = set()
        while True:
            left = deadline - self.clock.monotonic()
            if callee_gone.is_set():
                result.status, result.ended_by = "callee_hung_up", "callee"
                break
            if left <= 0:
                result.reason = self.directory.why_not or f"no agent answered within {q.timeout_s:g} s"
                break
            pick = self.directory.select(q.name, exclude=tried)
            if pick is None:
                if tried and self.directory.select(q.name) is not None:
                    tried.clear()  # every free agent was tried once: go round again
                    continue
                # nobody free now: wait a moment (an agent may finish wrap-up) unless the callee leaves
                await self._race(self.clock.sleep(min(1.0, left)), callee_gone, None, None)
                continue
            tried.add(pick.label)
            self.directory.reserve(pick)
            attempt: dict[str, Any] = {"agent": pick.label, "uri": pick.uri}
            result.attempts.append(attempt)
            leg = await self._dial(pick, q, cid, attempt)
            if leg is None:
                self.directory.release(pick, talked=False)
                continue
            ring = min(q.ring_timeout_s, max(0.0, deadline - self.clock.monotonic()))
            try:
                answered = await self._race(leg.wait_answered(), callee_gone, leg, ring, raise_errors=False)
            except BaseException:
                self._end_later(leg)  # cancelled while ringing: CANCEL the agent
                self.directory.release(pick, talked=False)
                raise
            if answered is _ANSWERED:
                attempt["result"] = "answered"
                result.agent, result.agent_uri = pick.label, pick.uri
                result.agent_call_id = leg.info.call_id
                log.info("agent %s answered", pick.label, extra={"call_id": cid})
                return pick, leg, result
            attempt["result"] = (
                "callee_hung_up"
                if callee_gone.is_set()
                else (leg.info.disposition.value if leg.info.disposition else "no_answer")
            )
            await self._end(leg)
            self.directory.release(pick, talked=False)
            log.info(
                "agent %s did not take the call (%s)", pick.label, attempt["result"], extra={"call_id": cid}
            )
            if not callee_gone.is_set() and deadline - self.clock.monotonic() > 0:
                # a short pause before the next attempt: a busy queue number is not hammered
                await self._race(self.clock.sleep(0.5), callee_gone, None, None)
        result.wait_s = round(self.clock.monotonic() - t0, 3)
        return result

    async def _dial(
        self, pick: AgentPick, q: QueueConfig, cid: str, attempt: dict[str, Any]
    ) -> CallLeg | None:
        try:
            return await self.lines.originate(
                pick.uri,
                caller_id=self.caller_id,
                trunk=pick.trunk or self.trunk,
                headers={"X-Outcall-Transfer": cid},
                ring_timeout=q.ring_timeout_s + 5.0,
            )
        except Exception as e:  # a bad agent URI or a full trunk: try the next agent, never lose the call
            attempt["result"] = f"dial failed: {e}"
            log.warning("cannot dial agent %s: %s", pick.label, e, extra={"call_id": cid})
            await self.clock.sleep(0.5)  # no tight loop over a misconfigured agent
            return None

    def _end_later(self, leg: CallLeg) -> None:
        """Hang `leg` up in the background (we are being cancelled and cannot wait)."""
        task = asyncio.ensure_future(self._end(leg))
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    async def _end(self, leg: CallLeg) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(leg.hangup("normal"), 40.0)

    async def _race(
        self,
        aw: Awaitable[T],
        callee_gone: asyncio.Event,
        agent: CallLeg | None,
        limit_s: float | None,
        *,
        raise_errors: bool = True,
    ) -> T | object | None:
        """`aw`'s result, or None when the callee hangs up, the agent leg ends or the limit passes.
        With raise_errors=False a TelephonyError from `aw` is also None; a completed wait_answered()
        (result None) comes back as _ANSWERED."""
        task = asyncio.ensure_future(aw)
        gone = asyncio.ensure_future(callee_gone.wait())
        waits: set[asyncio.Future[Any]] = {task, gone}
        if agent is not None:
            waits.add(asyncio.ensure_future(agent.wait_ended()))
        if limit_s is not None:
            waits.add(asyncio.ensure_future(self.clock.sleep(limit_s)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in waits:
                if f is not task and not f.done():
                    f.cancel()
        if task.done() and not callee_gone.is_set():
            exc = task.exception()
            if exc is None:
                r = task.result()
                return _ANSWERED if r is None else r
            if raise_errors and not isinstance(exc, TelephonyError):
                raise exc
            return None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None


_ANSWERED = object()
