"""SIP dialogs (RFC 3261 section 12): the state that in-dialog requests (ACK for 2xx, BYE, PRACK, INFO,
UPDATE) are built from: Call-ID, tags, CSeq, remote target (Contact) and the route set (Record-Route)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from gateway.sip.message import BRANCH_MAGIC, NameAddr, SipRequest, SipResponse, SipUri

Addr = tuple[str, int]


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(10)}@{host}"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 1
    remote_seq: int | None = None

    @property
    def id(self) -> tuple[str, str, str]:
        return self.call_id, self.local_tag, self.remote_tag

    @classmethod
    def from_uac(cls, request: SipRequest, resp: SipResponse) -> Dialog:
        """Dialog of the caller, from our INVITE and a 1xx/2xx with a To tag (RFC 3261 12.1.2)."""
        to = resp.to
        contacts = resp.headers.values("Contact")
        target = NameAddr.parse(contacts[0]).uri if contacts else SipUri.parse(request.uri)
        routes = list(reversed(resp.headers.values("Record-Route")))
        frm = request.from_
        return cls(
            call_id=request.call_id,
            local_tag=frm.tag or "",
            remote_tag=to.tag or "",
            local_uri=NameAddr(frm.uri, frm.display),
            remote_uri=NameAddr(to.uri, to.display),
            remote_target=target,
            route_set=routes,
            local_seq=request.cseq[0],
        )

    @classmethod
    def from_uas(cls, request: SipRequest, local_tag: str) -> Dialog:
        """Dialog of the callee, from the INVITE we answer (RFC 3261 12.1.1)."""
        contacts = request.headers.values("Contact")
        frm = request.from_
        to = request.to
        target = NameAddr.parse(contacts[0]).uri if contacts else frm.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=frm.tag or "",
            local_uri=NameAddr(to.uri, to.display),
            remote_uri=NameAddr(frm.uri, frm.display),
            remote_target=target,
            route_set=list(request.headers.values("Record-Route")),
            local_seq=secrets.randbelow(10000) + 1,
            remote_seq=request.cseq[0],
        )

    def update_from_response(self, resp: SipResponse) -> None:
        """A 2xx after an early dialog: its Contact is the new target, its Record-Route the route set."""
        contacts = resp.headers.values("Contact")
        if contacts:
            self.remote_target = NameAddr.parse(contacts[0]).uri
        rr = resp.headers.values("Record-Route")
        if rr:
            self.route_set = list(reversed(rr))

    def _uri_and_routes(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return str(self.remote_target), []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return str(self.remote_target), list(self.route_set)
        # strict router (RFC 3261 12.2.1.1): it goes in the Request-URI, the target at the end of Route
        uri = SipUri(**{**first.uri.__dict__, "params": {}})
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    def request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        user_agent: str | None = None,
    ) -> SipRequest:
        """A new in-dialog request. CSeq is incremented unless given (ACK and CANCEL reuse the INVITE's)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._uri_and_routes()
        req = SipRequest(method=method, uri=uri)
        h = req.headers
        h.add("Via", via)
        for r in routes:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        h.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if contact is not None and method in ("INVITE", "UPDATE"):
            h.add("Contact", contact)
        if user_agent:
            h.add("User-Agent", user_agent)
        if content_type and body:
            h.add("Content-Type", content_type)
        req.body = body
        return req

    def next_hop_transport(self, outbound_proxy: Addr | None = None) -> str | None:
        """The ``transport=`` ("tcp", "udp") of the URI the next hop comes from (the first route, else the
        remote target, RFC 3261 8.1.2 / RFC 3263 4.1); None when it has none or the hop is the outbound
        proxy (then the trunk's transport applies)."""
        if self.route_set:
            uri = NameAddr.parse(self.route_set[0]).uri
        elif outbound_proxy is not None:
            return None
        else:
            uri = self.remote_target
        t = uri.params.get("transport")
        return t.lower() if t else None

    def next_hop(self, outbound_proxy: Addr | None = None) -> Addr:
        """Where in-dialog requests go: the first route, else the outbound proxy, else the target."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri.hostport
        if outbound_proxy is not None:
            return outbound_proxy
        return self.remote_target.hostport
