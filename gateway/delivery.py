"""The outbox deliverer: drains due outbox rows to their sinks (MQTT, webhooks) concurrently, records each
result, and backs off failures exponentially (with jitter) until a row is delivered or dead.

A row is marked delivered only after its sink acknowledged it (MQTT PUBACK, HTTP 2xx); a crash between
the acknowledgement and the bookkeeping re-sends the row later, so delivery is at least once and every
message carries the outcome id for the receiver to dedupe.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from engine.clock import Clock, RealClock
from engine.outcome import CallOutcome
from gateway.store.outbox import Failure, OutboxItem, OutboxStore, RetryPolicy

log = logging.getLogger("outcall.delivery")

T = TypeVar("T")


class DeliveryError(Exception):
    """A sink could not deliver; ``permanent`` sends the row straight to the dead letters (e.g. HTTP 400)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sink(Protocol):
    """An outbox sink (engine.ports.OutcomeSink plus a name and an event filter)."""

    @property
    def name(self) -> str: ...

    def accepts(self, outcome: CallOutcome) -> bool: ...

    async def deliver(self, outcome: object) -> None: ...

    async def close(self) -> None: ...


class BatchSink(Sink, Protocol):
    """A sink that can take several outcomes in one request (``batch_size`` > 1) and wants at most
    ``concurrency`` requests in flight (optional attributes; see OutboxDeliverer)."""

    batch_size: int

    async def deliver_batch(self, outcomes: list[dict[str, Any]]) -> None: ...


@dataclass
class DrainResult:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    def add(self, other: DrainResult) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead


class OutboxDeliverer:
    """Drain the outbox of ``store`` to ``sinks`` (rows of other sinks are left for whoever has them)."""

    def __init__(
        self,
        store: OutboxStore,
        sinks: Sequence[Sink],
        *,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        batch: int = 500,
        concurrency: int = 500,
        send_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.sinks = {s.name: s for s in sinks}
        self.policy = policy or RetryPolicy()
        self.clock: Clock = clock or RealClock()
        self.batch = batch
        self.send_timeout_s = send_timeout_s
        self.rng = rng or random.Random()
        self.totals = DrainResult()
        self._sems = {
            s.name: asyncio.Semaphore(int(getattr(s, "concurrency", concurrency) or concurrency))
            for s in sinks
        }
        self._wake = asyncio.Event()
        self._stopped = False

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if getattr(self.store, "inline", False):
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def notify(self) -> None:
        """New rows were enqueued: drain now rather than at the next poll."""
        self._wake.set()

    async def _send(self, sink: Sink, items: list[OutboxItem]) -> list[Failure | None]:
        """One request: a single outcome, or a chunk to a batching sink (all succeed or fail together)."""
        async with self._sems[sink.name]:
            try:
                if len(items) == 1:
                    await asyncio.wait_for(sink.deliver(items[0].payload), self.send_timeout_s)
                else:
                    batch = [i.payload for i in items]
                    await asyncio.wait_for(
                        sink.deliver_batch(batch),  # type: ignore[attr-defined]
                        self.send_timeout_s,
                    )
            except DeliveryError as e:
                return [Failure(i.id, str(e), permanent=e.permanent) for i in items]
            except TimeoutError:
                err = f"{sink.name}: no acknowledgement in {self.send_timeout_s:g} s"
                return [Failure(i.id, err) for i in items]
            except Exception as e:  # a sink bug must not stop the other deliveries
                log.exception("sink %s failed on outcome %s", sink.name, items[0].outcome_id)
                return [Failure(i.id, f"{type(e).__name__}: {e}") for i in items]
        return [None] * len(items)

    def _chunks(self, items: list[OutboxItem]) -> list[tuple[Sink, list[OutboxItem]]]:
        by_sink: dict[str, list[OutboxItem]] = {}
        for i in items:
            by_sink.setdefault(i.sink, []).append(i)
        out: list[tuple[Sink, list[OutboxItem]]] = []
        for name, group in by_sink.items():
            sink = self.sinks[name]
            size = max(1, int(getattr(sink, "batch_size", 1) or 1))
            out.extend((sink, group[k : k + size]) for k in range(0, len(group), size))
        return out

    async def drain_once(self) -> DrainResult:
        """Claim one batch of due rows, send them concurrently, record the results."""
        if not self.sinks:
            return DrainResult()
        now = self._now()
        items = await self._db(
            self.store.outbox_claim_sync,
            self.batch,
            now=now,
            lease_s=self.policy.lease_s,
            sinks=list(self.sinks),
        )
        if not items:
            return DrainResult()
        chunks = self._chunks(items)
        sent = await asyncio.gather(*(self._send(sink, group) for sink, group in chunks))
        failed: list[Failure] = []
        ok: list[int] = []
        for (_sink, group), outcome in zip(chunks, sent, strict=True):
            for item, f in zip(group, outcome, strict=True):
                if f is None:
                    ok.append(item.id)
                else:
                    failed.append(f)
        for f in failed:
            log.warning("outbox row %d not delivered: %s", f.id, f.error)
        _n, dead = await self._db(
            self.store.outbox_settle_sync, ok, failed, self.policy, now=self._now(), rng=self.rng
        )
        if dead:
            log.error("%d outbox rows moved to dead letters (see `outcall outbox list --state dead`)", dead)
        res = DrainResult(claimed=len(items), delivered=len(ok), failed=len(failed), dead=dead)
        self.totals.add(res)
        return res

    async def drain(self, *, max_batches: int | None = None) -> DrainResult:
        """Drain until nothing is due now (failures wait for their backoff, so this ends)."""
        total = DrainResult()
        n = 0
        while max_batches is None or n < max_batches:
            res = await self.drain_once()
            total.add(res)
            n += 1
            if res.claimed == 0:
                break
        return total

    async def run(self, *, poll_s: float = 1.0) -> None:
        """Drain forever: right away after `notify()`, else when the next row is due (at most poll_s)."""
        while not self._stopped:
            try:
                res = await self.drain_once()
            except Exception:  # e.g. the database is locked for a moment: try again shortly
                log.exception("outbox drain failed")
                res = DrainResult()
            if res.claimed:
                await asyncio.sleep(0)
                continue
            due = await self._db(self.store.outbox_next_due_sync)
            wait = poll_s if due is None else min(poll_s, max(0.0, due - self._now()))
            self._wake.clear()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def close(self) -> None:
        self.stop()
        for s in self.sinks.values():
            try:
                await s.close()
            except Exception:
                log.exception("closing sink %s failed", s.name)
