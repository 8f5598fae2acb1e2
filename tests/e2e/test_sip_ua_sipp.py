"""Our SIP UA (gateway.sip) dialing real sipp UAS scenarios over loopback, with real RTP."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from peers import AUTH_PASSWORD, AUTH_USER, SippServer
from pydantic import SecretStr

from engine.audio import rms_dbfs
from engine.dispositions import Disposition
from engine.errors import TelephonyError
from engine.events import Answered, DtmfReceived, Ended, LegEvent
from engine.trunk import Trunk
from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., SippServer]


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=5.0)
    await agent.start()
    yield agent
    await agent.close()


async def _events(leg: SipCallLeg) -> list[LegEvent]:
    return [ev async for ev in leg.events()]


def _tone(seconds: float, freq: float = 440.0) -> Any:
    t = np.arange(int(8000 * seconds)) / 8000.0
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


async def test_answered_call_echo_and_hangup(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri(), caller_id="1001")
    events = asyncio.ensure_future(_events(leg))
    await asyncio.wait_for(leg.wait_answered(), 5)
    assert leg.info.codec == "PCMA"
    leg.play(_tone(0.6))

    async def heard() -> float:
        async for frame in leg.frames():
            if rms_dbfs(frame) > -40:
                return rms_dbfs(frame)
        return -120.0

    level = await asyncio.wait_for(heard(), 5)
    assert level > -40  # our tone came back from sipp's rtp_echo
    await asyncio.wait_for(leg.hangup(), 5)
    result = await uas.wait_async(10)
    result.check()
    evs = await asyncio.wait_for(events, 2)
    assert [type(e) for e in evs][-2:] == [Answered, Ended]
    assert leg.info.disposition is Disposition.ANSWERED and leg.info.hangup_by == "robot"
    assert "User-Agent: outcall/0.1" in result.messages


async def test_busy_486_with_q850_reason(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_busy_486.xml", timeout_s=10)
    leg = await ua.originate(uas.uri())
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 5)
    assert ei.value.disposition is Disposition.BUSY
    assert ei.value.sip_code == 486 and ei.value.q850_cause == 17
    info = await leg.wait_ended()
    assert info.q850_cause == 17 and info.reason is not None and "cause=17" in info.reason
    (await uas.wait_async(10)).check()


async def test_no_answer_cancelled_on_hangup(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_ring_cancel.xml", timeout_s=10)
    leg = await ua.originate(uas.uri())
    first = await asyncio.wait_for(anext(aiter(leg.events())), 5)
    assert first.type == "ringing"
    await asyncio.wait_for(leg.hangup(), 5)
    assert leg.info.disposition is Disposition.CANCELLED and leg.info.sip_code == 487
    (await uas.wait_async(10)).check()


async def test_ring_timeout_cancels_as_no_answer(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_ring_cancel.xml", timeout_s=10)
    leg = await ua.originate(uas.uri(), ring_timeout=0.5)
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 5)
    assert ei.value.disposition is Disposition.NO_ANSWER
    assert leg.info.hangup_by == "system"
    (await uas.wait_async(10)).check()


async def test_far_end_bye(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_far_bye.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    await asyncio.wait_for(leg.wait_answered(), 5)
    info = await asyncio.wait_for(leg.wait_ended(), 5)
    assert info.hangup_by == "callee" and info.disposition is Disposition.ANSWERED
    assert info.q850_cause == 16
    (await uas.wait_async(10)).check()


async def test_rtp_stops_media_timeout(sipp_server: ServerFactory) -> None:
    agent = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=0.5)
    await agent.start()
    try:
        uas = sipp_server("uas_answer_echo.xml", rtp_echo=False, timeout_s=10)  # answers, sends no RTP
        leg = await agent.originate(uas.uri())
        await asyncio.wait_for(leg.wait_answered(), 5)
        types = [e.type async for e in leg.events()]
        assert "media_timeout" in types and types[-1] == "ended"
        info = await asyncio.wait_for(leg.wait_ended(), 5)
        assert info.disposition is Disposition.MEDIA_TIMEOUT and info.hangup_by == "system"
        (await uas.wait_async(10)).check()
    finally:
        await agent.close()


async def _until(pred: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for a condition in sipp's message log (a file: no event to wait on), bounded by `limit`."""

    async def poll() -> None:
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), limit)


def _auth_ua() -> UserAgent:
    trunk = Trunk(name="auth", auth_user=AUTH_USER, password=SecretStr(AUTH_PASSWORD))
    return UserAgent(bind_host="127.0.0.1", trunks=[trunk], rtp_inactivity_timeout=5.0)


@pytest.mark.parametrize("scenario", ["ua_auth_401.xml", "ua_auth_407.xml", "ua_auth_stale.xml"])
async def test_digest_challenge_answered(sipp_server: ServerFactory, scenario: str) -> None:
    agent = await _auth_ua().start()
    try:
        uas = sipp_server(scenario, rtp_echo=True, timeout_s=10)
        leg = await agent.originate(uas.uri())
        await asyncio.wait_for(leg.wait_answered(), 5)
        await asyncio.wait_for(leg.hangup(), 5)
        result = await uas.wait_async(10)
        result.check()
        header = "Proxy-Authorization:" if "407" in scenario else "Authorization:"
        assert header in result.messages
        # same Call-ID throughout, a new CSeq for each retry
        cseqs = re.findall(r"^CSeq: (\d+) INVITE", result.messages, re.M)
        assert len(set(cseqs)) == (3 if "stale" in scenario else 2)
    finally:
        await agent.close()


async def test_early_media_then_480(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_early_480.xml", timeout_s=10)
    leg = await ua.originate(uas.uri())
    seen: list[str] = []
    loud = 0

    async def listen() -> None:
        nonlocal loud
        async for frame in leg.frames():
            if rms_dbfs(frame) > -45:
                loud += 1

    listener = asyncio.ensure_future(listen())
    async for ev in leg.events():
        seen.append(ev.type)
    await asyncio.wait_for(listener, 5)
    assert seen[0] == "early_media" and seen[-1] == "ended"
    assert loud > 10  # the announcement was heard before the failure
    with pytest.raises(TelephonyError) as ei:
        await leg.wait_answered()
    assert ei.value.sip_code == 480 and ei.value.q850_cause == 20
    assert ei.value.disposition is Disposition.POWERED_OFF
    (await uas.wait_async(10)).check()


@pytest.mark.parametrize("scenario", ["ua_100rel.xml", "ua_lost_200.xml", "ua_422.xml"])
async def test_answered_variants(ua: UserAgent, sipp_server: ServerFactory, scenario: str) -> None:
    uas = sipp_server(scenario, rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    events = asyncio.ensure_future(_events(leg))
    await asyncio.wait_for(leg.wait_answered(), 5)
    if scenario == "ua_lost_200.xml":
        await _until(lambda: uas.messages().count("\nACK ") >= 2)
    await asyncio.wait_for(leg.hangup(), 5)
    result = await uas.wait_async(10)
    result.check()
    evs = await asyncio.wait_for(events, 2)
    assert sum(1 for e in evs if e.type == "answered") == 1
    if scenario == "ua_100rel.xml":
        assert "PRACK sip:" in result.messages and "RAck: 1 " in result.messages


async def test_forked_second_2xx_gets_ack_and_bye(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_forked_2xx.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    await asyncio.wait_for(leg.wait_answered(), 5)
    await _until(lambda: "tag=forkB" in uas.messages() and uas.messages().count("\nBYE ") >= 1)
    assert leg.info.ended_at is None  # the call itself is still up
    await asyncio.wait_for(leg.hangup(), 5)
    (await uas.wait_async(10)).check()
    assert leg.info.disposition is Disposition.ANSWERED


async def test_200_after_cancel_gets_ack_and_bye(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_200_after_cancel.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    first = await asyncio.wait_for(anext(aiter(leg.events())), 5)
    assert first.type == "ringing"
    await asyncio.wait_for(leg.hangup(), 5)
    assert leg.info.disposition is Disposition.CANCELLED
    with pytest.raises(TelephonyError):
        await leg.wait_answered()
    (await uas.wait_async(10)).check()


async def test_midcall_reinvite_info_options(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("ua_midcall.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    evs = await asyncio.wait_for(_events(leg), 8)
    dtmf = [e for e in evs if isinstance(e, DtmfReceived)]
    assert [(d.digit, d.method, d.duration_ms) for d in dtmf] == [("5", "info", 160)]
    assert leg.info.remote_media == "127.0.0.1:40000"
    assert leg.info.hangup_by == "callee"
    (await uas.wait_async(10)).check()


async def test_garbage_does_not_disturb_a_call(
    ua: UserAgent, sipp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=10)
    leg = await ua.originate(uas.uri())
    await asyncio.wait_for(leg.wait_answered(), 5)
    junk = [
        b"\x00\xff\xfe garbage",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n",  # mandatory headers missing
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"BYE sip:x SIP/2.0\r\nVia: nonsense\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID: "
        + leg.call_id.encode()
        + b"\r\nCSeq: 9 BYE\r\n\r\n",  # broken Via for our own call
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for j in junk:
            s.sendto(j, ua.local_addr)
    await _until(lambda: ua.transport.dropped >= len(junk))
    assert sum("dropped" in r.getMessage() for r in caplog.records) >= len(junk)
    assert leg.info.ended_at is None
    await asyncio.wait_for(leg.hangup(), 5)
    (await uas.wait_async(10)).check()
    assert leg.info.disposition is Disposition.ANSWERED
