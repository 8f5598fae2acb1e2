"""Trunk admission and failover against real SIP peers: a SIPp SBC answering 503 + Retry-After, and our
own UA (answer mode) as the healthy trunk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from peers import SippServer

from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.errors import ConfigError, TelephonyError
from engine.trunk import Trunk
from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent
from gateway.trunks import TrunkRouter

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., SippServer]


async def _answering_peer() -> tuple[UserAgent, list[SipCallLeg]]:
    legs: list[SipCallLeg] = []

    async def on_incoming(leg: SipCallLeg) -> None:
        legs.append(leg)
        await leg.answer()

    peer = UserAgent(on_incoming=on_incoming)
    await peer.start()
    return peer, legs


async def test_503_fails_over_and_honours_retry_after(sipp_server: ServerFactory) -> None:
    sbc = sipp_server("trunk_503.xml")
    peer, answered = await _answering_peer()
    h, p = peer.local_addr
    trunks = [
        Trunk(name="a", proxy=sbc.address, failover=["b"]),
        Trunk(name="b", proxy=f"{h}:{p}"),
    ]
    ua = UserAgent(trunks=trunks)
    await ua.start()
    router = TrunkRouter(ua, trunks)
    try:
        leg = await router.originate("13812345678", ring_timeout=5)
        await asyncio.wait_for(leg.wait_answered(), 5)
        assert leg.info.trunk == "b"
        assert len(answered) == 1
        snap = router.snapshot()
        assert snap["a"]["failovers"] == 1
        assert 100 < snap["a"]["down_for_s"] <= 120  # Retry-After: 120 honoured
        # while "a" is down, new calls go straight to "b"
        leg2 = await router.originate("13812345679", ring_timeout=5)
        await asyncio.wait_for(leg2.wait_answered(), 5)
        assert leg2.info.trunk == "b" and router.snapshot()["a"]["attempts"] == 1
        for lg in (leg, leg2):
            await lg.hangup()
            await asyncio.wait_for(lg.wait_ended(), 5)
        (await sbc.wait_async(10)).check()
    finally:
        await ua.close()
        await peer.close()


async def test_all_trunks_down_is_a_retryable_infrastructure_failure(sipp_server: ServerFactory) -> None:
    sbc = sipp_server("trunk_503.xml")
    trunks = [Trunk(name="a", proxy=sbc.address)]
    ua = UserAgent(trunks=trunks)
    await ua.start()
    router = TrunkRouter(ua, trunks)
    try:
        with pytest.raises(TelephonyError, match="answered 503") as first:
            await router.originate("13812345678", ring_timeout=5)
        assert first.value.sip_code == 503 and first.value.retryable
        with pytest.raises(TelephonyError) as e:
            await router.originate("13812345679")
        assert e.value.disposition is Disposition.FAILED and e.value.retryable
        assert "down" in str(e.value)
        (await sbc.wait_async(10)).check()
    finally:
        await ua.close()


async def test_max_channels_and_cps_pacing() -> None:
    peer, _answered = await _answering_peer()
    h, p = peer.local_addr
    clock = VirtualClock()
    trunks = [Trunk(name="a", proxy=f"{h}:{p}", max_channels=2, calls_per_second=2)]
    ua = UserAgent(trunks=trunks)
    await ua.start()
    router = TrunkRouter(ua, trunks, clock=clock)
    try:
        legs = [await router.originate(f"1381234567{i}", ring_timeout=5) for i in range(1)]
        second: asyncio.Task[Any] = asyncio.create_task(router.originate("13812345671", ring_timeout=5))
        await asyncio.sleep(0)
        assert not second.done()  # the token bucket holds it for 0.5 s (virtual)
        await clock.advance(0.5)
        legs.append(await asyncio.wait_for(second, 5))
        with pytest.raises(TelephonyError, match="all 2 channels in use"):
            await router.originate("13812345672")
        await legs[0].hangup()
        await asyncio.wait_for(legs[0].wait_ended(), 5)
        await asyncio.sleep(0)
        assert router.snapshot()["a"]["in_use"] == 1
        await clock.advance(1.0)
        legs.append(await router.originate("13812345673", ring_timeout=5))
        for lg in legs[1:]:
            await lg.hangup()
            await asyncio.wait_for(lg.wait_ended(), 5)
    finally:
        await ua.close()
        await peer.close()


def test_unknown_failover_trunk_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown trunk 'zz'"):
        TrunkRouter(object(), [Trunk(name="a", failover=["zz"])])  # type: ignore[arg-type]
