"""Trunk admission and failover in front of the UA: max channels, calls per second, and failover on 503.

`TrunkRouter.originate()` is the LineProvider the engine dials through. Per trunk it keeps the channels in
use (never more than `max_channels`), paces call attempts to `calls_per_second` with a token bucket, and
when a trunk answers 5xx (or never answers at all) before any provisional response it marks the trunk
down for the Retry-After it gave (default 30 s) and tries the trunks named in `failover`, in order.
A failover is only possible before the far end showed signs of life (180/183/200): after that the call
belongs to that trunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.clock import Clock, RealClock
from engine.dispositions import Disposition
from engine.errors import ConfigError, TelephonyError
from engine.trunk import Trunk
from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent

log = logging.getLogger("outcall.trunks")

DEFAULT_BACKOFF_S = 30.0
#: SIP codes meaning "this trunk cannot take the call now" (try another one)
FAILOVER_CODES = frozenset({408, 500, 502, 503, 504})


@dataclass
class TrunkState:
    trunk: Trunk
    in_use: int = 0
    down_until: float = 0.0
    tokens: float = 1.0
    refilled_at: float = 0.0
    attempts: int = 0
    failovers: int = 0


class TrunkRouter:
    def __init__(self, ua: UserAgent, trunks: Sequence[Trunk], *, clock: Clock | None = None) -> None:
        if not trunks:
            raise ConfigError("no trunk configured", hint="set OUTCALL_SIP_PROXY or define [[trunks]]")
        self.ua = ua
        self.clock = clock or RealClock()
        self.states: dict[str, TrunkState] = {t.name: TrunkState(t) for t in trunks}
        self.default = trunks[0].name
        for t in trunks:
            for name in t.failover:
                if name not in self.states:
                    raise ConfigError(
                        f"trunk {t.name!r} fails over to unknown trunk {name!r}",
                        hint=f"configured trunks: {', '.join(self.states)}",
                    )

    def _chain(self, name: str | None) -> list[TrunkState]:
        first = name or self.default
        if first not in self.states:
            raise ConfigError(f"no trunk named {first!r}", hint=f"configured: {', '.join(self.states)}")
        chain = [first, *self.states[first].trunk.failover]
        return [self.states[n] for n in dict.fromkeys(chain)]

    def _take_token(self, st: TrunkState) -> float:
        """Seconds to wait before the next attempt on this trunk (0: go now, token taken)."""
        now = self.clock.monotonic()
        rate = st.trunk.calls_per_second
        st.tokens = min(max(1.0, rate), st.tokens + (now - st.refilled_at) * rate)
        st.refilled_at = now
        if st.tokens >= 1.0:
            st.tokens -= 1.0
            return 0.0
        return (1.0 - st.tokens) / rate

    async def originate(
        self,
        target: str,
        *,
        caller_id: str | None = None,
        trunk: str | None = None,
        headers: Mapping[str, str] | None = None,
        ring_timeout: float = 45.0,
        call_id: str | None = None,
    ) -> SipCallLeg:
        """Dial on the first usable trunk of the chain. Raises TelephonyError(failed, retryable) when every
        trunk is down or full: an infrastructure failure that must not consume the contact's attempt."""
        last: str = "no trunk available"
        last_code: int | None = None
        for st in self._chain(trunk):
            name = st.trunk.name
            if st.down_until > self.clock.monotonic():
                last = f"trunk {name} is down for {st.down_until - self.clock.monotonic():.0f} s more"
                continue
            if st.in_use >= st.trunk.max_channels:
                last = f"trunk {name} has all {st.trunk.max_channels} channels in use"
                continue
            st.in_use += 1
            try:
                while (wait := self._take_token(st)) > 0:
                    await self.clock.sleep(wait)
                st.attempts += 1
                leg = await self.ua.originate(
                    target,
                    caller_id=caller_id,
                    trunk=name,
                    headers=headers,
                    ring_timeout=ring_timeout,
                    call_id=call_id,
                )
            except BaseException:
                st.in_use -= 1
                raise
            asyncio.get_running_loop().create_task(self._release_when_ended(st, leg))
            await leg.wait_progress()
            info = leg.info
            if info.answered_at is None and info.ringing_at is None and info.sip_code in FAILOVER_CODES:
                backoff = info.retry_after if info.retry_after is not None else DEFAULT_BACKOFF_S
                st.down_until = self.clock.monotonic() + backoff
                st.failovers += 1
                last = f"trunk {name} answered {info.sip_code}; down for {backoff:.0f} s"
                last_code = info.sip_code
                log.warning("%s; trying the next trunk", last, extra={"call_id": info.call_id})
                continue
            return leg
        raise TelephonyError(
            f"cannot dial {target}: {last}",
            disposition=Disposition.FAILED,
            retryable=True,
            sip_code=last_code,
            hint="check the trunks' state, channels and Retry-After",
        )

    async def _release_when_ended(self, st: TrunkState, leg: SipCallLeg) -> None:
        try:
            await leg.wait_ended()
        finally:
            st.in_use -= 1

    def snapshot(self) -> dict[str, dict[str, float]]:
        now = self.clock.monotonic()
        return {
            n: {
                "in_use": s.in_use,
                "max_channels": s.trunk.max_channels,
                "down_for_s": max(0.0, s.down_until - now),
                "attempts": s.attempts,
                "failovers": s.failovers,
            }
            for n, s in self.states.items()
        }
