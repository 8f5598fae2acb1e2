"""Our UA calling our UA (answer mode) over real UDP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.dispositions import Disposition
from engine.errors import ConfigError, TelephonyError
from engine.events import Answered, Ended, LegEvent, Ringing
from engine.trunk import Trunk
from gateway.leg import SipCallLeg
from gateway.sip.call import caller_id_headers
from gateway.sip.message import SipParseError
from gateway.sip.ua import UserAgent

UaFactory = Callable[..., Awaitable[UserAgent]]


async def _collect(leg: SipCallLeg) -> list[LegEvent]:
    return [ev async for ev in leg.events()]


async def test_call_answered_and_hung_up_by_caller(make_ua: UaFactory, medias: list[Any]) -> None:
    incoming: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        await incoming.put(leg)
        await leg.answer()

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    host, port = callee.local_addr
    leg = await caller.originate(f"sip:bot@{host}:{port}", caller_id="1001")
    events = asyncio.ensure_future(_collect(leg))
    await asyncio.wait_for(leg.wait_answered(), 2)
    callee_leg = await asyncio.wait_for(incoming.get(), 2)
    await asyncio.wait_for(callee_leg.wait_answered(), 2)
    assert leg.info.codec == "PCMA"
    assert callee_leg.info.caller_id == "1001"
    await asyncio.wait_for(leg.hangup(), 2)
    info = await asyncio.wait_for(callee_leg.wait_ended(), 2)
    assert info.hangup_by == "callee" and info.disposition is Disposition.ANSWERED
    assert leg.info.hangup_by == "robot" and leg.info.disposition is Disposition.ANSWERED
    evs = await asyncio.wait_for(events, 2)
    assert [type(e) for e in evs] == [Ringing, Answered, Ended]
    media = [m for m in medias if m.call_id == leg.call_id]
    assert media[0].started and media[0].remote[-1]["codec"] == "PCMA"
    assert media[0].closed.is_set()


async def test_call_rejected_busy(make_ua: UaFactory) -> None:
    async def on_incoming(leg: SipCallLeg) -> None:
        await leg.reject(486)

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    host, port = callee.local_addr
    leg = await caller.originate(f"sip:bot@{host}:{port}")
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 2)
    assert ei.value.disposition is Disposition.BUSY and ei.value.sip_code == 486
    info = await leg.wait_ended()
    assert info.disposition is Disposition.BUSY and info.sip_code == 486


async def test_callee_hangs_up(make_ua: UaFactory) -> None:
    legs: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        await leg.answer()
        await legs.put(leg)

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    leg = await caller.originate("sip:bot@{}:{}".format(*callee.local_addr))
    await asyncio.wait_for(leg.wait_answered(), 2)
    cleg = await asyncio.wait_for(legs.get(), 2)
    await asyncio.wait_for(cleg.hangup(), 2)
    info = await asyncio.wait_for(leg.wait_ended(), 2)
    assert info.hangup_by == "callee" and info.disposition is Disposition.ANSWERED


async def test_cancel_while_ringing(make_ua: UaFactory) -> None:
    rang: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        leg.ring()
        await rang.put(leg)

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    leg = await caller.originate("sip:bot@{}:{}".format(*callee.local_addr))
    cleg = await asyncio.wait_for(rang.get(), 2)
    await asyncio.wait_for(leg.hangup(), 2)
    assert leg.info.disposition is Disposition.CANCELLED and leg.info.sip_code == 487
    cinfo = await asyncio.wait_for(cleg.wait_ended(), 2)
    assert cinfo.disposition is Disposition.CANCELLED and cinfo.hangup_by == "callee"


async def test_ring_timeout_is_no_answer(make_ua: UaFactory) -> None:
    async def on_incoming(leg: SipCallLeg) -> None:
        leg.ring()

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    leg = await caller.originate("sip:bot@{}:{}".format(*callee.local_addr), ring_timeout=0.2)
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 2)
    assert ei.value.disposition is Disposition.NO_ANSWER
    assert leg.info.hangup_by == "system"


@pytest.mark.parametrize(
    ("mode", "privacy", "from_user", "extra"),
    [
        ("from", "none", "02150001234", []),
        ("pai", "none", "acct", [("P-Asserted-Identity", "<sip:02150001234@carrier.test>")]),
        (
            "rpid",
            "id",
            "acct",
            [
                ("Remote-Party-ID", "<sip:02150001234@carrier.test>;party=calling;screen=yes;privacy=full"),
                ("Privacy", "id"),
            ],
        ),
    ],
)
def test_caller_id_modes(mode: str, privacy: str, from_user: str, extra: list[tuple[str, str]]) -> None:
    trunk = Trunk(name="t", proxy="carrier.test", auth_user="acct", caller_id_mode=mode, privacy=privacy)
    user, headers = caller_id_headers(trunk, "02150001234", "carrier.test", {"X-Job": "7"})
    assert user == from_user and headers == [*extra, ("X-Job", "7")]
    with pytest.raises(SipParseError):
        caller_id_headers(trunk, None, "carrier.test", {"X-Bad": "a\r\nVia: evil"})


async def test_number_through_trunk_proxy_and_bad_targets(make_ua: UaFactory) -> None:
    seen: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        await seen.put(leg)
        await leg.reject(404)

    callee = await make_ua(on_incoming=on_incoming)
    proxy = "{}:{}".format(*callee.local_addr)
    caller = await make_ua(trunks=[Trunk(name="cn", proxy=proxy, domain="carrier.test")])
    leg = await caller.originate("+86 138-1234-5678", caller_id="02150001234", trunk="cn")
    cleg = await asyncio.wait_for(seen.get(), 2)
    assert cleg.info.target == "sip:13812345678@carrier.test"
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 2)
    assert ei.value.disposition is Disposition.INVALID_NUMBER
    with pytest.raises(ConfigError, match="unknown trunk"):
        await caller.originate("13812345678", trunk="nope")
    with pytest.raises(ConfigError, match="not digits"):
        await caller.originate("call-me", trunk="cn")
