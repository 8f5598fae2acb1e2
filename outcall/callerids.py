"""Caller-ID pools per trunk, kept in the store so health and quarantines survive a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from engine.campaign.callerid import CallerIdHealth, CallerIdPolicy, CallerIdPool
from engine.outcome import CallOutcome
from engine.trunk import Trunk
from gateway.store.campaigns import CampaignStore

log = logging.getLogger("outcall.callerid")


class CallerIds:
    def __init__(
        self, trunks: list[Trunk], policy: CallerIdPolicy, store: CampaignStore | None = None
    ) -> None:
        self.store = store
        self.pools = {t.name: CallerIdPool(list(t.caller_ids), policy) for t in trunks if t.caller_ids}
        self._restored = False

    def _restore(self) -> None:
        if self._restored or self.store is None:
            return
        for trunk, pool in self.pools.items():
            for number, state in self.store.load_caller_ids_sync(trunk).items():
                pool.restore(number, state)
        self._restored = True

    async def pick(self, trunk: str, callee: str, *, callee_area: str | None = None) -> str | bool | None:
        """A caller ID for this call; None when the trunk's pool is exhausted (all quarantined or capped);
        False when the trunk has no pool (the trunk's default presentation applies)."""
        pool = self.pools.get(trunk)
        if pool is None:
            return False
        if not self._restored:
            await asyncio.to_thread(self._restore)
        return pool.pick(callee, datetime.now(UTC), callee_area=callee_area)

    async def record(self, trunk: str, outcome: CallOutcome) -> None:
        pool = self.pools.get(trunk)
        if pool is None or not outcome.caller_id or outcome.caller_id not in pool.numbers:
            return
        q = pool.record(outcome.caller_id, outcome.disposition, outcome.talk_s, datetime.now(UTC))
        if q is not None:
            log.warning(
                "caller ID %s quarantined until %s: %s",
                q.number,
                q.until.isoformat(timespec="minutes"),
                q.reason,
                extra={"event": "caller_id_quarantined", "caller_id": q.number, "trunk": trunk},
            )
        if self.store is not None:
            state = pool.dump(outcome.caller_id)
            await asyncio.to_thread(
                self.store.save_caller_id_sync, outcome.caller_id, trunk, state, now=time.time()
            )

    def health(self, trunk: str | None = None) -> dict[str, list[CallerIdHealth]]:
        if not self._restored:
            self._restore()
        now = datetime.now(UTC)
        return {t: p.health(now) for t, p in self.pools.items() if trunk in (None, t)}
