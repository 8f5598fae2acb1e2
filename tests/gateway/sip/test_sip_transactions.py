"""Transaction timers and edge cases against a raw UDP peer (scripted byte by byte), plus TCP and load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine.dispositions import Disposition
from engine.errors import TelephonyError
from gateway.leg import SipCallLeg
from gateway.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from gateway.sip.transaction import Timers
from gateway.sip.ua import UserAgent

UaFactory = Callable[..., Awaitable[UserAgent]]
TINY = Timers(t1=0.02, t2=0.16, t4=0.2)


class Peer(asyncio.DatagramProtocol):
    """A scripted SIP peer: receives parsed messages into a queue, sends raw bytes."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[SipMessage, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.inbox.put_nowait((parse_message(data), (addr[0], addr[1])))

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        h, p = self.transport.get_extra_info("sockname")[:2]
        return h, p

    async def recv(self, limit: float = 2.0) -> SipMessage:
        msg, _ = await asyncio.wait_for(self.inbox.get(), limit)
        return msg

    async def recv_request(self, method: str, limit: float = 2.0) -> SipRequest:
        while True:
            m = await self.recv(limit)
            if isinstance(m, SipRequest) and m.method == method:
                return m

    def reply(
        self,
        req: SipRequest,
        code: int,
        reason: str,
        to_tag: str | None = "peer1",
        extra: str = "",
        body: bytes = b"",
        dest: tuple[str, int] | None = None,
    ) -> None:
        h = req.headers
        to = h["To"] if (to_tag is None or "tag=" in h["To"]) else f"{h['To']};tag={to_tag}"
        lines = (
            [f"SIP/2.0 {code} {reason}"]
            + [f"Via: {v}" for v in h.get_all("Via")]
            + [
                f"From: {h['From']}",
                f"To: {to}",
                f"Call-ID: {h['Call-ID']}",
                f"CSeq: {h['CSeq']}",
                f"Contact: <sip:peer@{self.addr[0]}:{self.addr[1]}>",
            ]
        )
        if extra:
            lines.append(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body, dest)

    def send(self, data: bytes, dest: tuple[str, int] | None = None) -> None:
        target = dest or self._dest
        assert self.transport is not None and target is not None
        self.transport.sendto(data, target)

    _dest: tuple[str, int] | None = None


SDP = (
    b"v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    yield proto
    transport.close()


async def test_invite_retransmitted_then_timer_b(make_ua: UaFactory, peer: Peer) -> None:
    ua = await make_ua(timers=TINY)
    leg = await ua.originate("sip:x@{}:{}".format(*peer.addr))
    first = await peer.recv_request("INVITE")
    again = await peer.recv_request("INVITE", limit=0.5)
    assert again.top_via.branch == first.top_via.branch and again.to_bytes() == first.to_bytes()
    with pytest.raises(TelephonyError) as ei:
        await asyncio.wait_for(leg.wait_answered(), 5)
    assert ei.value.disposition is Disposition.UNREACHABLE and ei.value.sip_code == 408


async def test_hangup_before_provisional_waits_then_cancels(make_ua: UaFactory, peer: Peer) -> None:
    ua = await make_ua(timers=TINY)
    leg = await ua.originate("sip:x@{}:{}".format(*peer.addr))
    peer._dest = ua.local_addr
    inv = await peer.recv_request("INVITE")
    hang = asyncio.ensure_future(leg.hangup())
    await asyncio.sleep(0)  # let hangup() run: nothing but INVITE retransmissions before a provisional
    while not peer.inbox.empty():
        m, _ = peer.inbox.get_nowait()
        assert isinstance(m, SipRequest) and m.method == "INVITE"
    peer.reply(inv, 180, "Ringing")
    cancel = await peer.recv_request("CANCEL")
    assert cancel.top_via.branch == inv.top_via.branch and cancel.cseq == (inv.cseq[0], "CANCEL")
    assert "tag=" not in cancel.headers["To"]
    peer.reply(cancel, 200, "OK")
    peer.reply(inv, 487, "Request Terminated")
    ack = await peer.recv_request("ACK")
    assert ack.top_via.branch == inv.top_via.branch  # hop-by-hop ACK, same transaction
    assert ack.to.tag == "peer1"
    await asyncio.wait_for(hang, 2)
    assert leg.info.disposition is Disposition.CANCELLED and leg.info.sip_code == 487


async def test_uas_retransmits_200_until_ack_and_absorbs_invite_retransmission(
    make_ua: UaFactory, peer: Peer
) -> None:
    answered: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        await leg.answer()
        await answered.put(leg)

    ua = await make_ua(timers=TINY, on_incoming=on_incoming)
    peer._dest = ua.local_addr
    invite = (
        f"INVITE sip:bot@{ua.local_addr[0]}:{ua.local_addr[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {peer.addr[0]}:{peer.addr[1]};branch=z9hG4bKpeerinv1\r\n"
        f"From: <sip:1001@peer>;tag=ptag\r\nTo: <sip:bot@{ua.local_addr[0]}>\r\nCall-ID: uas-test-1\r\n"
        "CSeq: 7 INVITE\r\n"
        f"Contact: <sip:1001@{peer.addr[0]}:{peer.addr[1]}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    )
    raw = invite.encode() + SDP
    peer.send(raw)
    codes: list[int] = []
    while 200 not in codes:
        m = await peer.recv()
        assert isinstance(m, SipResponse)
        codes.append(m.status)
    ok = m
    assert codes[:3] == [100, 180, 200]
    assert ok.content_type == "application/sdp" and b"m=audio" in ok.body
    # no ACK yet: the 200 comes again (timer G), and a retransmitted INVITE is answered with it too
    again = await peer.recv(0.5)
    assert isinstance(again, SipResponse) and again.status == 200
    peer.send(raw)
    again2 = await peer.recv(0.5)
    assert isinstance(again2, SipResponse) and again2.status == 200
    tag = ok.to.tag
    ack = (
        f"ACK sip:outcall@{ua.local_addr[0]}:{ua.local_addr[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {peer.addr[0]}:{peer.addr[1]};branch=z9hG4bKpeerack1\r\n"
        f"From: <sip:1001@peer>;tag=ptag\r\nTo: <sip:bot@{ua.local_addr[0]}>;tag={tag}\r\n"
        "Call-ID: uas-test-1\r\n"
        "CSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    peer.send(ack.encode())
    leg = await asyncio.wait_for(answered.get(), 2)
    assert leg.info.answered_at is not None and leg.direction == "inbound"
    # OPTIONS out of dialog and in dialog
    opts = (
        f"OPTIONS sip:bot@{ua.local_addr[0]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {peer.addr[0]}:{peer.addr[1]};branch=z9hG4bKopt\r\n"
        f"From: <sip:1001@peer>;tag=ptag\r\nTo: <sip:bot@{ua.local_addr[0]}>;tag={tag}\r\n"
        "Call-ID: uas-test-1\r\n"
        "CSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    while not peer.inbox.empty():
        peer.inbox.get_nowait()
    peer.send(opts.encode())
    r = await peer.recv()
    assert isinstance(r, SipResponse) and r.status == 200 and "INFO" in (r.headers.get("Allow") or "")
    # INFO application/dtmf in dialog
    info_req = (
        f"INFO sip:bot@{ua.local_addr[0]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {peer.addr[0]}:{peer.addr[1]};branch=z9hG4bKinfo\r\n"
        f"From: <sip:1001@peer>;tag=ptag\r\nTo: <sip:bot@{ua.local_addr[0]}>;tag={tag}\r\n"
        "Call-ID: uas-test-1\r\n"
        "CSeq: 9 INFO\r\nContent-Type: application/dtmf\r\nContent-Length: 1\r\n\r\n#"
    )
    peer.send(info_req.encode())
    r = await peer.recv()
    assert isinstance(r, SipResponse) and r.status == 200 and r.cseq == (9, "INFO")
    events = leg.events()
    ev = await asyncio.wait_for(anext(events), 1)
    while ev.type != "dtmf":
        ev = await asyncio.wait_for(anext(events), 1)
    assert ev.model_dump()["digit"] == "#"
    # a BYE for an unknown dialog gets 481
    bad = info_req.replace("uas-test-1", "nope").replace("INFO", "BYE").replace("z9hG4bKinfo", "z9hG4bKb2")
    peer.send(bad.encode())
    r = await peer.recv()
    assert isinstance(r, SipResponse) and r.status == 481


async def test_incoming_offer_without_common_codec_gets_488(make_ua: UaFactory, peer: Peer) -> None:
    called: list[SipCallLeg] = []
    ua = await make_ua(timers=TINY, on_incoming=called.append)
    peer._dest = ua.local_addr
    g729 = b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    invite = (
        f"INVITE sip:bot@h SIP/2.0\r\nVia: SIP/2.0/UDP {peer.addr[0]}:{peer.addr[1]};branch=z9hG4bK488\r\n"
        "From: <sip:1001@peer>;tag=ptag\r\nTo: <sip:bot@h>\r\nCall-ID: uas-488\r\nCSeq: 1 INVITE\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(g729)}\r\n\r\n"
    )
    peer.send(invite.encode() + g729)
    codes = []
    for _ in range(2):
        m = await peer.recv()
        assert isinstance(m, SipResponse)
        codes.append(m.status)
    assert codes == [100, 488] and not called


async def test_large_invite_goes_over_tcp(make_ua: UaFactory) -> None:
    got: asyncio.Queue[SipCallLeg] = asyncio.Queue()

    async def on_incoming(leg: SipCallLeg) -> None:
        await leg.answer()
        await got.put(leg)

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    leg = await caller.originate(
        "sip:bot@{}:{}".format(*callee.local_addr), headers={"X-Campaign-Data": "x" * 1500}
    )
    await asyncio.wait_for(leg.wait_answered(), 3)
    cleg = await asyncio.wait_for(got.get(), 3)
    assert cleg._call.invite is not None
    assert cleg._call.invite.top_via.transport == "TCP"
    assert cleg._call.invite.headers["X-Campaign-Data"] == "x" * 1500
    await asyncio.wait_for(leg.hangup(), 3)
    assert (await cleg.wait_ended()).hangup_by == "callee"


async def test_200_concurrent_calls_on_one_socket(make_ua: UaFactory) -> None:
    async def on_incoming(leg: SipCallLeg) -> None:
        await leg.answer()

    callee = await make_ua(on_incoming=on_incoming)
    caller = await make_ua()
    uri = "sip:bot@{}:{}".format(*callee.local_addr)
    legs = [await caller.originate(uri) for _ in range(220)]
    await asyncio.wait_for(asyncio.gather(*(leg.wait_answered() for leg in legs)), 10)
    assert caller.active_calls == 220 and callee.active_calls == 220
    await asyncio.wait_for(asyncio.gather(*(leg.hangup() for leg in legs)), 10)
    assert all(leg.info.disposition is Disposition.ANSWERED for leg in legs)
    assert caller.active_calls == 0
