"""The SIP user agent: one UDP socket (plus TCP) for all calls of a process; an engine.ports.LineProvider.

    ua = UserAgent(bind_host="127.0.0.1", trunks=[Trunk(name="carrier", proxy="10.0.0.1:5060")])
    await ua.start()
    leg = await ua.originate("13812345678", caller_id="02150001234", trunk="carrier")
    await leg.wait_answered()

Answer mode: `UserAgent(on_incoming=callback)`; the callback gets each incoming `SipCallLeg` and may
`await leg.answer()` or `await leg.reject(486)`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.clock import Clock, RealClock
from engine.errors import ConfigError
from engine.ports import LegInfo
from engine.trunk import Trunk
from gateway.sip.call import ALLOW, CallLog, SipCall, caller_id_headers
from gateway.sip.dialog import Addr, new_call_id, new_tag
from gateway.sip.message import (
    REASONS,
    NameAddr,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
)
from gateway.sip.sdp import DEFAULT_CODECS, Codec, SdpError, negotiate, parse_sdp
from gateway.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    Timers,
)
from gateway.sip.transport import SipTransport, Source, TransportName

if TYPE_CHECKING:
    from gateway.leg import MediaSession, SipCallLeg

log = logging.getLogger("gateway.sip.ua")

MediaFactory = Callable[[str], Awaitable["MediaSession"]]
IncomingHandler = Callable[["SipCallLeg"], Awaitable[None] | None]


class UserAgent:
    """A SIP UA for many concurrent calls on one socket. Implements `engine.ports.LineProvider`."""

    def __init__(
        self,
        *,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        public_host: str | None = None,
        public_port: int | None = None,
        trunks: Sequence[Trunk] = (),
        on_incoming: IncomingHandler | None = None,
        rtp_host: str | None = None,
        rtp_port_range: tuple[int, int] | None = None,
        rtp_inactivity_timeout: float = 30.0,
        media_factory: MediaFactory | None = None,
        codecs: tuple[Codec, ...] = DEFAULT_CODECS,
        timers: Timers | None = None,
        session_expires: int | None = None,
        min_se: int = 90,
        tcp: bool = True,
        user_agent: str = "outcall/0.1",
        contact_user: str = "outcall",
        clock: Clock | None = None,
    ) -> None:
        self.bind_host = bind_host
        self.public_host = public_host
        self.public_port = public_port
        self.trunks = {t.name: t for t in trunks}
        self.default_trunk = trunks[0] if trunks else Trunk(name="direct")
        self.on_incoming = on_incoming
        self.rtp_host = rtp_host or bind_host
        self.rtp_port_range = rtp_port_range
        self.rtp_inactivity_timeout = rtp_inactivity_timeout
        self._media_factory = media_factory or self._default_media
        self.codecs = codecs
        self.timers = timers or Timers()
        self.session_expires = session_expires
        self.min_se = min_se
        self.user_agent = user_agent
        self.contact_user = contact_user
        self.clock: Clock = clock or RealClock()
        self.transport = SipTransport(
            self._on_message,
            bind_host=bind_host,
            bind_port=bind_port,
            tcp=tcp,
            on_send_error=self._on_send_error,
        )
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._client_dest: dict[ClientTransaction, tuple[Addr, TransportName]] = {}
        self._server: dict[tuple[str, str, int, str], ServerTransaction] = {}
        self._calls: dict[str, SipCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolved: dict[str, str] = {}
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> UserAgent:
        await self.transport.start()
        self.started = True
        log.info(
            "SIP UA listening on %s:%d (udp%s)",
            *self.transport.local_addr,
            "+tcp" if self.transport.tcp_enabled else "",
        )
        return self

    async def close(self) -> None:
        for call in list(self._calls.values()):
            if not call.ended:
                try:
                    await asyncio.wait_for(call.hangup("shutdown", by="system"), 2.0)
                except (TimeoutError, Exception):
                    log.warning("[%s] did not end cleanly on shutdown", call.call_id)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for txn in list(self._client.values()) + list(self._server.values()):
            txn.terminate()
        await self.transport.close()
        self.started = False

    async def __aenter__(self) -> UserAgent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def local_addr(self) -> Addr:
        return self.transport.local_addr

    @property
    def active_calls(self) -> int:
        return sum(1 for c in self._calls.values() if not c.ended)

    # ------------------------------------------------------------------ addresses
    def _adv(self) -> Addr:
        return self.public_host or self.transport.local_addr[
            0
        ], self.public_port or self.transport.local_addr[1]

    def via(self, branch: str) -> str:
        host, port = self._adv()
        return f"SIP/2.0/UDP {host}:{port};branch={branch};rport"

    def contact(self) -> str:
        host, port = self._adv()
        return f"<sip:{self.contact_user}@{host}:{port}>"

    def media_address(self, local_rtp_host: str) -> str:
        return self.public_host or local_rtp_host

    def proxy_addr(self, trunk: Trunk) -> Addr | None:
        if not trunk.proxy:
            return None
        host, _, port = trunk.proxy.partition(":")
        return self._resolved.get(host, host), int(port) if port else 5060

    async def _resolve(self, host: str) -> str:
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host.strip("[]")
        except ValueError:
            pass
        if host in self._resolved:
            return self._resolved[host]
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        if not infos:
            raise ConfigError(f"cannot resolve SIP host {host!r}", hint="check the trunk's proxy/domain")
        addr = str(infos[0][4][0])
        self._resolved[host] = addr
        return addr

    # ------------------------------------------------------------------ sending
    def _transport_for(
        self, size: int, trunk: Trunk | None, uri_transport: str | None = None
    ) -> TransportName:
        """TCP when the trunk or the next hop's URI (``transport=tcp``) asks for it, or the message is too
        large for UDP (RFC 3261 18.1.1); UDP otherwise."""
        if self.transport.tcp_enabled and (
            (trunk is not None and trunk.transport == "tcp") or uri_transport == "tcp"
        ):
            return "TCP"
        return "TCP" if self.transport.use_tcp(size) else "UDP"

    @staticmethod
    def _stamp_via(req: SipRequest, tname: TransportName) -> None:
        via = Via.parse(req.headers.values("Via")[0])
        if via.transport != tname:
            via.transport = tname
            req.headers.replace_first_value("Via", str(via))

    def send_client(
        self,
        req: SipRequest,
        dest: Addr,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
        *,
        trunk: Trunk | None = None,
        uri_transport: str | None = None,
        transport: TransportName | None = None,
    ) -> ClientTransaction:
        """Send ``req`` in a new client transaction. ``transport`` forces one (a CANCEL goes the way its
        INVITE went); else ``uri_transport`` (the next hop URI's transport=), the trunk and the size
        decide."""
        tname = transport or self._transport_for(len(req.to_bytes()), trunk, uri_transport)
        self._stamp_via(req, tname)
        cls = ClientInviteTransaction if req.method == "INVITE" else ClientNonInviteTransaction

        def send(data: bytes) -> None:
            self.transport.send(data, dest, transport=tname)

        txn = cls(
            req,
            send,
            timers=self.timers,
            reliable=tname == "TCP",
            on_response=on_response,
            on_timeout=on_timeout,
            on_terminated=self._client_done,
        )
        self._client[txn.key] = txn
        self._client_dest[txn] = (dest, tname)
        txn.start()
        return txn

    def send_request(
        self, req: SipRequest, dest: Addr, *, trunk: Trunk | None = None, uri_transport: str | None = None
    ) -> tuple[bytes, TransportName]:
        """Send a request outside any transaction (the ACK for a 2xx); returns the bytes and the transport
        used, so that it can be re-sent unchanged with `send_raw`."""
        tname = self._transport_for(len(req.to_bytes()), trunk, uri_transport)
        self._stamp_via(req, tname)
        data = req.to_bytes()
        self.transport.send(data, dest, transport=tname)
        return data, tname

    def send_raw(
        self, data: bytes, dest: Addr, trunk: Trunk | None = None, *, transport: TransportName | None = None
    ) -> None:
        self.transport.send(data, dest, transport=transport or self._transport_for(len(data), trunk))

    def _client_done(self, txn: object) -> None:
        assert isinstance(txn, ClientTransaction)
        if self._client.get(txn.key) is txn:
            del self._client[txn.key]
        self._client_dest.pop(txn, None)

    def _server_done(self, txn: object) -> None:
        for k, v in list(self._server.items()):
            if v is txn:
                del self._server[k]
                break

    def _on_send_error(self, addr: Addr, tname: TransportName, exc: Exception) -> None:
        for txn, (dest, t) in list(self._client_dest.items()):
            if dest == addr and t == tname:
                txn.fail()

    def response(
        self,
        req: SipRequest,
        code: int,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        body: bytes = b"",
    ) -> SipResponse:
        """A response to `req` (RFC 3261 8.2.6): Via, From, To (+tag), Call-ID, CSeq copied."""
        resp = SipResponse(status=code, reason=reason or REASONS.get(code, "Unknown"))
        h = resp.headers
        for v in req.headers.get_all("Via"):
            h.add("Via", v)
        h.add("From", req.headers["From"])
        to = req.headers["To"]
        if to_tag and code != 100 and ";tag=" not in to.replace(" ", "").lower():
            to = f"{to};tag={to_tag}"
        h.add("To", to)
        h.add("Call-ID", req.call_id)
        h.add("CSeq", req.headers["CSeq"])
        h.add("Server", self.user_agent)
        if body:
            h.add("Content-Type", "application/sdp")
            resp.body = body
        return resp

    # ------------------------------------------------------------------ LineProvider
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
        """Send the INVITE and return the leg at once (dialing). Raises ConfigError for bad targets."""
        from gateway.leg import SipCallLeg

        if not self.started:
            raise ConfigError("UserAgent.originate() before start()", hint="await ua.start() first")
        tr = self._trunk(trunk)
        ruri_s = tr.request_uri(target)
        try:
            ruri = SipUri.parse(ruri_s)
        except SipParseError as e:
            raise ConfigError(
                f"cannot dial {target!r}: {e}", hint="dial digits or sip:user@host[:port]"
            ) from None
        if tr.proxy:
            host, _, port = tr.proxy.partition(":")
            dest: Addr = (await self._resolve(host), int(port) if port else 5060)
        else:
            h, p = ruri.hostport
            dest = (await self._resolve(h), p)
        domain = tr.domain or (tr.proxy or ruri.host).split(":")[0]
        try:
            from_user, extra = caller_id_headers(tr, caller_id, domain, headers)
        except SipParseError as e:
            raise ConfigError(str(e), hint="extra SIP headers must be single-line 'Name: value'") from None
        cid = call_id or new_call_id(self._adv()[0])
        if cid in self._calls:
            raise ConfigError(f"call_id {cid!r} is already in use")
        info = LegInfo(call_id=cid, target=target, caller_id=caller_id, trunk=tr.name)
        call = SipCall(self, role="uac", info=info, trunk=tr, log=CallLog(log, {"call_id": cid}))
        if not tr.proxy:
            call.uri_transport = (ruri.params.get("transport") or "").lower() or None
        self._calls[cid] = call
        try:
            media = await self._media_factory(cid)
        except Exception:
            del self._calls[cid]
            raise
        leg = SipCallLeg(call, media, clock=self.clock)
        from_addr = NameAddr(SipUri(host=domain, user=from_user), params={"tag": new_tag()})
        to_addr = NameAddr(SipUri(host=ruri.host, user=ruri.user, port=ruri.port))
        call.start_invite(
            request_uri=ruri_s,
            dest=dest,
            from_addr=from_addr,
            to_addr=to_addr,
            extra_headers=extra,
            ring_timeout=ring_timeout,
        )
        return leg

    def _trunk(self, name: str | None) -> Trunk:
        if name is None:
            return self.default_trunk
        try:
            return self.trunks[name]
        except KeyError:
            raise ConfigError(f"unknown trunk {name!r}; configured: {sorted(self.trunks)}") from None

    async def _default_media(self, call_id: str) -> MediaSession:
        from gateway.rtp.session import RtpSession

        return await RtpSession.create(
            bind_host=self.rtp_host,
            port_range=self.rtp_port_range,
            call_id=call_id,
            inactivity_timeout=self.rtp_inactivity_timeout,
            clock=self.clock,
        )

    def call_ended(self, call: SipCall) -> None:
        # keep the call around for 64*T1 to re-ACK or BYE late 2xx retransmissions
        loop = asyncio.get_running_loop()
        loop.call_later(self.timers.b, self._forget_call, call)

    def _forget_call(self, call: SipCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background SIP task failed: %r", task.exception())

    # ------------------------------------------------------------------ receiving
    def _on_message(self, msg: SipMessage, source: Source) -> None:
        if isinstance(msg, SipResponse):
            self._on_response(msg)
        elif isinstance(msg, SipRequest):
            self._on_request(msg, source)

    def _on_response(self, resp: SipResponse) -> None:
        branch = resp.top_via.branch or ""
        _, method = resp.cseq
        txn = self._client.get((branch, method))
        if txn is not None:
            txn.receive(resp)
            return
        call = self._calls.get(resp.call_id)
        if (
            call is not None
            and method == "INVITE"
            and 200 <= resp.status < 300
            and call.role == "uac"
            and call.invite is not None
            and resp.from_.tag == call.local_tag
            and resp.cseq[0] == call.invite.cseq[0]
        ):
            # a 2xx to our INVITE after its transaction ended (retransmission, or another fork): ACK it.
            # Only ours (our From tag and CSeq): a forged 2xx must not make us ACK/BYE its Contact.
            call._on_invite_2xx(resp)
            return
        log.debug("[%s] stray response %d %s dropped", resp.call_id, resp.status, method)

    def _server_key(self, req: SipRequest, method: str) -> tuple[str, str, int, str]:
        via = req.top_via
        host, port = via.sent_by
        return via.branch or "", host, port, method

    def _on_request(self, req: SipRequest, source: Source) -> None:
        method = req.method
        if method == "ACK":
            txn = self._server.get(self._server_key(req, "INVITE"))
            if isinstance(txn, ServerInviteTransaction) and txn.final_status and txn.final_status >= 300:
                txn.ack_received()
                return
            call = self._calls.get(req.call_id)
            if call is not None:
                call.on_ack(req)
            return
        key = self._server_key(req, method)
        existing = self._server.get(key)
        if existing is not None:
            existing.retransmission()
            return
        reliable = source.transport == "TCP"

        def send(data: bytes) -> None:
            self.transport.send(data, source.addr, transport=source.transport, conn=source.conn)

        stxn: ServerTransaction
        if method == "INVITE":
            stxn = ServerInviteTransaction(
                req, send, timers=self.timers, reliable=reliable, on_terminated=self._server_done
            )
        else:
            stxn = ServerNonInviteTransaction(
                req, send, timers=self.timers, reliable=reliable, on_terminated=self._server_done
            )
        self._server[key] = stxn
        if method == "INVITE":
            stxn.respond(self.response(req, 100))
        to_tag = req.to.tag
        call = self._calls.get(req.call_id)
        if method == "CANCEL":
            inv = self._server.get(self._server_key(req, "INVITE"))
            if inv is None or call is None:
                stxn.respond(self.response(req, 481))
                return
            stxn.respond(self.response(req, 200))
            call.on_cancel()
            return
        if to_tag:
            if call is None or call.local_tag != to_tag:
                stxn.respond(self.response(req, 481))
                return
            call.on_request(req, stxn)
            return
        if method == "INVITE":
            assert isinstance(stxn, ServerInviteTransaction)
            self._incoming(req, stxn)
        elif method == "OPTIONS":
            resp = self.response(req, 200)
            resp.headers.add("Allow", ALLOW)
            resp.headers.add("Accept", "application/sdp")
            stxn.respond(resp)
        else:
            stxn.respond(self.response(req, 481 if method in ("BYE", "INFO", "UPDATE", "PRACK") else 405))

    def _incoming(self, req: SipRequest, txn: ServerInviteTransaction) -> None:
        cid = req.call_id
        if self.on_incoming is None:
            txn.respond(self.response(req, 480, to_tag=new_tag()))
            return
        if cid in self._calls:
            txn.respond(self.response(req, 482, reason="Loop Detected", to_tag=new_tag()))
            return
        if req.body.strip():
            try:
                negotiate(parse_sdp(req.body), self.codecs)
            except SdpError as e:
                log.warning("[%s] incoming INVITE with bad SDP: %s", cid, e)
                txn.respond(self.response(req, 488, to_tag=new_tag()))
                return
        frm = req.from_
        info = LegInfo(
            call_id=cid, target=req.uri, caller_id=frm.uri.user, trunk=None, invited_at=self.clock.now()
        )
        call = SipCall(
            self, role="uas", info=info, trunk=self.default_trunk, log=CallLog(log, {"call_id": cid})
        )
        call.accept_invite(req, txn, new_tag())
        self._calls[cid] = call
        call.log.info("incoming INVITE from %s", frm.uri)
        self._spawn(self._run_incoming(call))

    async def _run_incoming(self, call: SipCall) -> None:
        from gateway.leg import SipCallLeg

        try:
            media = await self._media_factory(call.call_id)
        except Exception as e:
            call.log.error("cannot open media for incoming call: %s", e)
            call.reject(500)
            return
        leg = SipCallLeg(call, media, clock=self.clock)
        if call.ended:  # cancelled while media was opening
            await leg._close_media()
            return
        assert self.on_incoming is not None
        try:
            result = self.on_incoming(leg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            call.log.exception("on_incoming callback failed")
            call.reject(500)
