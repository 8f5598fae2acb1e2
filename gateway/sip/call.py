"""One call's signalling: the INVITE session of a caller (UAC) or a callee (UAS) and its dialog.

`SipCall` owns the SIP side only (INVITE/ACK/PRACK/CANCEL/BYE, 401/407, 422, re-INVITE/UPDATE, INFO). It
reports what happens to a `CallListener` (the leg, which owns the media and the event stream) and fills
the shared `LegInfo`. All of it runs on the UserAgent's loop; timers are loop handles.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from engine.dispositions import Disposition, from_sip, parse_q850_cause
from engine.errors import TelephonyError
from engine.events import HangupBy
from engine.ports import LegInfo
from engine.trunk import Trunk
from gateway.sip.dialog import Addr, Dialog, new_branch
from gateway.sip.digest import Challenge, DigestError, authorization, challenges_of
from gateway.sip.message import REASONS, NameAddr, SipParseError, SipRequest, SipResponse, Via
from gateway.sip.sdp import NegotiatedMedia, SdpError, answer_offer, build_offer, parse_answer

if TYPE_CHECKING:
    from gateway.sip.transaction import ServerInviteTransaction, ServerTransaction
    from gateway.sip.transport import TransportName
    from gateway.sip.ua import UserAgent

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK"


class CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line carries the call_id, in the text and in `extra`."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        call_id = (self.extra or {}).get("call_id", "")
        kwargs.setdefault("extra", {})["call_id"] = call_id
        return f"[{call_id}] {msg}", kwargs


class CallListener(Protocol):
    """What the call tells its leg."""

    def local_media(self) -> tuple[str, int]: ...

    def on_ringing(self, code: int) -> None: ...

    def on_early_media(self, media: NegotiatedMedia, code: int) -> None: ...

    def on_answered(self, media: NegotiatedMedia) -> None: ...

    def on_media_changed(self, media: NegotiatedMedia) -> None: ...

    def on_dtmf(self, digit: str, duration_ms: int | None) -> None: ...

    def on_ended(self) -> None: ...


State = Literal["calling", "proceeding", "early", "confirmed", "ending", "ended"]

_DTMF_RELAY = re.compile(r"^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$", re.MULTILINE)
_DTMF_DURATION = re.compile(r"^\s*Duration\s*=\s*(\d+)\s*$", re.MULTILINE)


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (`120`, `120;duration=60`, `18000 (in a meeting)`)."""
    if not value:
        return None
    head = value.split(";", 1)[0].split("(", 1)[0].strip()
    return float(head) if head.isdigit() else None


def parse_info_dtmf(content_type: str, body: bytes) -> tuple[str, int | None] | None:
    """The digit (and duration) of an INFO carrying application/dtmf-relay or application/dtmf."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/dtmf-relay":
        m = _DTMF_RELAY.search(text)
        if not m:
            return None
        d = _DTMF_DURATION.search(text)
        return m.group(1).upper(), int(d.group(1)) if d else None
    if content_type == "application/dtmf":
        s = text.strip()
        if len(s) == 1 and s in "0123456789*#ABCDabcd":
            return s.upper(), None
        if s.isdigit() and int(s) <= 15:  # event code form
            return "0123456789*#ABCD"[int(s)], None
    return None


class SipCall:
    def __init__(
        self,
        ua: UserAgent,
        *,
        role: Literal["uac", "uas"],
        info: LegInfo,
        trunk: Trunk,
        log: CallLog,
    ) -> None:
        self.ua = ua
        self.role = role
        self.info = info
        self.trunk = trunk
        self.log = log
        self.listener: CallListener | None = None
        self.state: State = "calling"
        self.dialog: Dialog | None = None
        self.early: dict[str, Dialog] = {}
        self.invite: SipRequest | None = None
        self.dest: Addr = ("127.0.0.1", 5060)
        self.media: NegotiatedMedia | None = None
        self.sdp_session_id = secrets.randbelow(2**31)
        self.sdp_version = 1
        self._answered = asyncio.get_running_loop().create_future()
        self._ended = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._provisional = False
        self._cancel_pending = False
        self._cancel_sent = False
        self._hangup_disposition = Disposition.CANCELLED
        self._hangup_by: HangupBy = "robot"
        self._hangup_reason = "normal"
        self._auth_tries = 0
        self._last_challenge: tuple[str, ...] = ()
        self._422_tries = 0
        self._session_expires = ua.session_expires
        self._rseq: dict[str, int] = {}
        self._ack_bytes: bytes | None = None
        self._ack_dest: Addr | None = None
        self._ack_transport: TransportName | None = None
        self.uri_transport: str | None = None  # transport= of the Request-URI when we dial it directly
        self._early_sdp_sent = False
        # UAS
        self._server_txn: ServerInviteTransaction | None = None
        self._pending_2xx: ServerInviteTransaction | None = None
        self._ack_waiter: asyncio.Future[None] | None = None
        self._ringing_sent = False
        self.local_tag = ""

    @property
    def call_id(self) -> str:
        return self.info.call_id

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    # ---------------------------------------------------------------- timers
    def _timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel_timer(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, fn)

    def _fire(self, name: str, fn: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        try:
            fn()
        except Exception:
            self.log.exception("timer %s failed", name)

    def _cancel_timer(self, name: str) -> None:
        h = self._timers.pop(name, None)
        if h is not None:
            h.cancel()

    # ---------------------------------------------------------------- UAC: dialing
    def start_invite(
        self,
        *,
        request_uri: str,
        dest: Addr,
        from_addr: NameAddr,
        to_addr: NameAddr,
        extra_headers: list[tuple[str, str]],
        ring_timeout: float,
    ) -> None:
        self.dest = dest
        self.local_tag = from_addr.tag or ""
        inv = SipRequest(method="INVITE", uri=request_uri)
        h = inv.headers
        h.add("Via", self.ua.via(new_branch()))
        h.add("Max-Forwards", "70")
        h.add("From", str(from_addr))
        h.add("To", str(to_addr))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{secrets.randbelow(9000) + 1} INVITE")
        h.add("Contact", self.ua.contact())
        h.add("Allow", ALLOW)
        h.add("Supported", "100rel, timer" if self._session_expires else "100rel")
        h.add("User-Agent", self.ua.user_agent)
        for name, value in extra_headers:
            h.add(name, value)
        if self._session_expires:
            h.add("Session-Expires", str(self._session_expires))
            h.add("Min-SE", str(self.ua.min_se))
        assert self.listener is not None
        host, port = self.listener.local_media()
        h.add("Content-Type", "application/sdp")
        inv.body = build_offer(
            self.ua.media_address(host), port, session_id=self.sdp_session_id, codecs=self.ua.codecs
        )
        self.invite = inv
        self.info.invited_at = self.ua.clock.now()
        self._send_invite()
        if ring_timeout > 0:
            self._timer("ring", ring_timeout, self._ring_timeout)

    def _send_invite(self) -> None:
        assert self.invite is not None
        self.log.info("INVITE %s via %s:%d", self.invite.uri, *self.dest)
        self.ua.send_client(
            self.invite,
            self.dest,
            self._on_invite_response,
            self._on_invite_timeout,
            trunk=self.trunk,
            uri_transport=self.uri_transport,
        )

    def _reinvite_with(self, mutate: Callable[[SipRequest], None]) -> None:
        """Same Call-ID and From tag, new branch and CSeq (RFC 3261 22.2, RFC 4028 7.4)."""
        assert self.invite is not None
        old = self.invite
        inv = SipRequest(method="INVITE", uri=old.uri, headers=old.headers.copy(), body=old.body)
        num, _ = old.cseq
        inv.headers.set("CSeq", f"{num + 1} INVITE")
        inv.headers.set("Via", self.ua.via(new_branch()))
        mutate(inv)
        self.invite = inv
        self._provisional = False
        self.state = "calling"
        self._send_invite()

    def _ring_timeout(self) -> None:
        if self.state in ("calling", "proceeding", "early"):
            self.log.info("ring timeout: cancelling")
            self._start_cancel(Disposition.NO_ANSWER, "system", "ring_timeout")

    def _on_invite_timeout(self) -> None:
        if self.ended or self.state == "confirmed":
            return
        if self._cancel_pending or self._cancel_sent:
            self._finish(self._hangup_disposition, self._hangup_by, sip_code=None, reason=self._hangup_reason)
        else:
            self.log.warning("INVITE timed out: no response from %s:%d", *self.dest)
            self._finish(Disposition.UNREACHABLE, "system", sip_code=408, reason="no response (timer B)")

    def _on_invite_response(self, resp: SipResponse) -> None:
        code = resp.status
        self.log.debug("INVITE <- %d %s", code, resp.reason)
        if 200 <= code < 300:
            self._on_invite_2xx(resp)
            return
        if self.ended:
            return
        if code < 200:
            self._on_provisional(resp)
        else:
            self._on_invite_failure(resp)

    def _on_provisional(self, resp: SipResponse) -> None:
        code = resp.status
        self._provisional = True
        if self.state == "calling":
            self.state = "proceeding"
        if self._cancel_pending and not self._cancel_sent:
            self._send_cancel()
        tag = resp.to.tag
        if code == 100 or self.state not in ("proceeding", "early"):
            return
        if tag and tag not in self.early:
            assert self.invite is not None
            self.early[tag] = Dialog.from_uac(self.invite, resp)
        if tag:
            self.state = "early"
        if "100rel" in [v.lower() for v in resp.headers.values("Require")] and tag:
            rseq_s = resp.headers.get("RSeq", "")
            if not rseq_s or not rseq_s.strip().isdigit():
                self.log.warning("reliable %d without a valid RSeq; not acknowledged", code)
            else:
                rseq = int(rseq_s)
                if rseq <= self._rseq.get(tag, 0):
                    return  # retransmission of a reliable provisional: already PRACKed
                self._rseq[tag] = rseq
                self._send_prack(self.early[tag], rseq, resp)
        has_sdp = resp.content_type == "application/sdp" and resp.body.strip()
        if code in (180, 181, 182) or (code == 183 and not has_sdp):
            if self.info.ringing_at is None:
                self.info.ringing_at = self.ua.clock.now()
            if self.listener is not None:
                self.listener.on_ringing(code)
        if has_sdp:
            try:
                neg = parse_answer(resp.body, codecs=self.ua.codecs)
            except SdpError as e:
                self.log.warning("ignoring early media SDP in %d: %s", code, e)
                return
            first = self.media is None
            self.media = neg
            if self.info.ringing_at is None:
                self.info.ringing_at = self.ua.clock.now()
            if self.listener is not None:
                if first:
                    self.listener.on_early_media(neg, code)
                else:
                    self.listener.on_media_changed(neg)

    def _send_prack(self, dialog: Dialog, rseq: int, resp: SipResponse) -> None:
        num, method = resp.cseq
        req = dialog.request("PRACK", via=self.ua.via(new_branch()), user_agent=self.ua.user_agent)
        req.headers.add("RAck", f"{rseq} {num} {method}")
        self.log.debug("PRACK RSeq %d", rseq)
        proxy = self.ua.proxy_addr(self.trunk)
        self.ua.send_client(
            req,
            dialog.next_hop(proxy),
            lambda r: None,
            lambda: self.log.warning("PRACK timed out"),
            trunk=self.trunk,
            uri_transport=dialog.next_hop_transport(proxy),
        )

    def _on_invite_failure(self, resp: SipResponse) -> None:
        code = resp.status
        if code in (401, 407) and not (self._cancel_pending or self._cancel_sent) and self._retry_auth(resp):
            return
        if code == 422 and self._422_tries == 0 and not (self._cancel_pending or self._cancel_sent):
            min_se = (resp.headers.get("Min-SE") or "").split(";")[0].strip()
            if min_se.isdigit():
                self._422_tries += 1
                self._session_expires = int(min_se)
                self.log.info("422: retrying with Session-Expires %s", min_se)

                def mutate(inv: SipRequest) -> None:
                    inv.headers.set("Session-Expires", min_se)
                    inv.headers.set("Min-SE", min_se)
                    sup = inv.headers.get("Supported") or ""
                    if "timer" not in sup:
                        inv.headers.set("Supported", (sup + ", timer").lstrip(", "))

                self._reinvite_with(mutate)
                return
        reason_hdr = resp.headers.get("Reason")
        if self._cancel_sent or self._cancel_pending:
            self._finish(
                self._hangup_disposition,
                self._hangup_by,
                sip_code=code,
                reason=reason_hdr or self._hangup_reason,
                q850=parse_q850_cause(reason_hdr),
            )
            return
        disp = from_sip(code, reason_hdr)
        self.info.retry_after = _retry_after(resp.headers.get("Retry-After"))
        self.log.info("call failed: %d %s -> %s", code, resp.reason, disp.value)
        self._finish(
            disp, "callee", sip_code=code, reason=reason_hdr or resp.reason, q850=parse_q850_cause(reason_hdr)
        )

    def _credentials(self, resp: SipResponse, method: str, uri: str) -> list[tuple[str, str]] | None:
        """Authorization headers for a challenge, or None when we cannot or should not answer it."""
        user = self.trunk.auth_user
        if not user or self.trunk.password is None:
            self.log.warning(
                "%d challenge but trunk %s has no auth_user/password", resp.status, self.trunk.name
            )
            return None
        chals: list[Challenge] = challenges_of(
            resp.headers.get_all("WWW-Authenticate"), resp.headers.get_all("Proxy-Authenticate")
        )
        if not chals:
            self.log.warning("%d without a Digest challenge we can answer", resp.status)
            return None
        out: list[tuple[str, str]] = []
        for ch in chals:
            try:
                out.append(
                    (
                        ch.response_header,
                        authorization(
                            ch,
                            method=method,
                            uri=uri,
                            username=user,
                            password=self.trunk.password.get_secret_value(),
                        ),
                    )
                )
            except DigestError as e:
                self.log.warning("cannot answer challenge: %s", e)
                return None
        return out

    def _retry_auth(self, resp: SipResponse) -> bool:
        chals = challenges_of(
            resp.headers.get_all("WWW-Authenticate"), resp.headers.get_all("Proxy-Authenticate")
        )
        nonces = tuple(c.nonce for c in chals)
        stale = any(c.stale for c in chals)
        # answer the first challenge; answer another only when the nonce went stale (RFC 2617 3.2.1)
        if self._auth_tries >= 1 and not (stale and self._auth_tries < 2 and nonces != self._last_challenge):
            self.log.warning("credentials rejected (%d again); giving up", resp.status)
            return False
        assert self.invite is not None
        creds = self._credentials(resp, "INVITE", self.invite.uri)
        if creds is None:
            return False
        self._auth_tries += 1
        self._last_challenge = nonces
        self.log.info("%d: retrying INVITE with credentials", resp.status)

        def mutate(inv: SipRequest) -> None:
            inv.headers.remove("Authorization")
            inv.headers.remove("Proxy-Authorization")
            for name, value in creds:
                inv.headers.add(name, value)

        self._reinvite_with(mutate)
        return True

    def _on_invite_2xx(self, resp: SipResponse) -> None:
        tag = resp.to.tag or ""
        assert self.invite is not None
        if self.dialog is not None and tag == self.dialog.remote_tag:
            self._resend_ack()  # retransmitted 2xx: our ACK was lost
            return
        if self.dialog is not None or self.ended:
            self.log.info("extra 2xx (to-tag %s): ACK and BYE", tag)
            d = Dialog.from_uac(self.invite, resp)
            self._send_ack(d, remember=False)
            self._send_bye_on(d, lambda: None)
            return
        d = self.early.get(tag) or Dialog.from_uac(self.invite, resp)
        d.update_from_response(resp)
        d.local_seq = max(d.local_seq, self.invite.cseq[0])
        self.dialog = d
        self._send_ack(d, remember=True)
        self._cancel_timer("ring")
        self.info.sip_code = resp.status
        if self._cancel_pending or self._cancel_sent:
            self.log.info("200 OK after our CANCEL: ACK and BYE")
            self.state = "confirmed"
            self._send_bye(self._hangup_disposition, self._hangup_by, self._hangup_reason)
            return
        neg: NegotiatedMedia | None = None
        if resp.content_type == "application/sdp" and resp.body.strip():
            try:
                neg = parse_answer(resp.body, codecs=self.ua.codecs)
            except SdpError as e:
                self.log.warning("unusable SDP answer in 200 OK: %s; hanging up", e)
                self.state = "confirmed"
                self._send_bye(Disposition.FAILED, "system", f"sdp: {e}", sip_code=488)
                return
        else:
            neg = self.media
        if neg is None:
            self.log.warning("200 OK without SDP and no early SDP; hanging up")
            self.state = "confirmed"
            self._send_bye(Disposition.FAILED, "system", "no SDP answer", sip_code=488)
            return
        self.media = neg
        self.state = "confirmed"
        self.info.answered_at = self.ua.clock.now()
        self.info.codec = neg.codec
        self.info.remote_media = f"{neg.host}:{neg.port}"
        self.log.info("answered (%s %s:%d)", neg.codec, neg.host, neg.port)
        self._setup_session_timer(resp)
        if not self._answered.done():
            self._answered.set_result(None)
        if self.listener is not None:
            self.listener.on_answered(neg)

    def _send_ack(self, d: Dialog, *, remember: bool) -> None:
        assert self.invite is not None
        ack = d.request(
            "ACK", via=self.ua.via(new_branch()), cseq=self.invite.cseq[0], user_agent=self.ua.user_agent
        )
        for name in ("Authorization", "Proxy-Authorization"):
            for v in self.invite.headers.get_all(name):
                ack.headers.add(name, v)
        proxy = self.ua.proxy_addr(self.trunk)
        dest = d.next_hop(proxy)
        data, tname = self.ua.send_request(
            ack, dest, trunk=self.trunk, uri_transport=d.next_hop_transport(proxy)
        )
        if remember:
            self._ack_bytes, self._ack_dest, self._ack_transport = data, dest, tname

    def _resend_ack(self) -> None:
        if self._ack_bytes is not None and self._ack_dest is not None:
            self.log.debug("2xx retransmission: re-sending ACK")
            self.ua.send_raw(self._ack_bytes, self._ack_dest, self.trunk, transport=self._ack_transport)

    def _setup_session_timer(self, resp: SipResponse) -> None:
        se = resp.headers.get("Session-Expires")
        if not se:
            return
        value, _, params = se.partition(";")
        if not value.strip().isdigit():
            return
        interval = int(value.strip())
        refresher = "uac" if "refresher=uac" in params.replace(" ", "").lower() else "uas"
        mine = (refresher == "uac") == (self.role == "uac")
        if mine and interval > 0:
            self._timer("refresh", interval / 2, self._refresh)
            self._refresh_interval = interval

    def _refresh(self) -> None:
        if self.state != "confirmed" or self.dialog is None:
            return
        req = self.dialog.request(
            "UPDATE", via=self.ua.via(new_branch()), contact=self.ua.contact(), user_agent=self.ua.user_agent
        )
        req.headers.add("Session-Expires", f"{self._refresh_interval};refresher={self.role}")
        proxy = self.ua.proxy_addr(self.trunk)
        self.ua.send_client(
            req,
            self.dialog.next_hop(proxy),
            lambda r: None,
            lambda: self.log.warning("session refresh UPDATE timed out"),
            trunk=self.trunk,
            uri_transport=self.dialog.next_hop_transport(proxy),
        )
        self._timer("refresh", self._refresh_interval / 2, self._refresh)

    # ---------------------------------------------------------------- hanging up
    def _start_cancel(self, disposition: Disposition, by: HangupBy, reason: str) -> None:
        self._hangup_disposition = disposition
        self._hangup_by = by
        self._hangup_reason = reason
        self._cancel_pending = True
        if self._provisional:
            self._send_cancel()
        # else: RFC 3261 9.1: CANCEL only after a provisional; _on_provisional sends it, timer B ends it

    def _send_cancel(self) -> None:
        if self._cancel_sent or self.invite is None:
            return
        self._cancel_sent = True
        inv = self.invite
        cancel = SipRequest(method="CANCEL", uri=inv.uri)
        h = cancel.headers
        h.add("Via", inv.headers.values("Via")[0])
        for r in inv.headers.get_all("Route"):
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers["From"])
        h.add("To", inv.headers["To"])
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq[0]} CANCEL")
        h.add("User-Agent", self.ua.user_agent)
        h.add("Reason", 'SIP;cause=487;text="' + self._hangup_reason + '"')
        self.log.info("CANCEL (%s)", self._hangup_reason)
        # RFC 3261 9.1: the CANCEL goes where the INVITE went, the same way (its Via says how)
        sent_over: TransportName = (
            "TCP" if Via.parse(cancel.headers.values("Via")[0]).transport == "TCP" else "UDP"
        )
        self.ua.send_client(
            cancel, self.dest, lambda r: None, lambda: None, trunk=self.trunk, transport=sent_over
        )
        # no final response to the INVITE within 64*T1 after CANCEL: give up on it
        self._timer("cancel_guard", self.ua.timers.b, self._cancel_guard)

    def _cancel_guard(self) -> None:
        if not self.ended and self.state != "confirmed":
            self.log.warning("no final response after CANCEL; ending")
            self._finish(self._hangup_disposition, self._hangup_by, sip_code=None, reason=self._hangup_reason)

    def terminate(self, disposition: Disposition, by: HangupBy, reason: str) -> None:
        """End the call whatever its state: CANCEL, BYE or a final response (we are the callee)."""
        if self.ended or self.state == "ending":
            return
        if self.state == "confirmed":
            self._send_bye(disposition, by, reason)
        elif self.role == "uac":
            self._start_cancel(disposition, by, reason)
        else:
            self.reject(480 if by != "robot" else 603, disposition=disposition, by=by)

    def _send_bye(
        self, disposition: Disposition, by: HangupBy, reason: str, *, sip_code: int | None = None
    ) -> None:
        assert self.dialog is not None
        self.state = "ending"
        self._hangup_disposition, self._hangup_by, self._hangup_reason = disposition, by, reason
        if sip_code is not None:
            self.info.sip_code = sip_code
        self.log.info("BYE (%s, %s)", disposition.value, reason)

        def done() -> None:
            self._finish(disposition, by, sip_code=self.info.sip_code, reason=reason)

        self._send_bye_on(self.dialog, done)

    def _send_bye_on(
        self,
        d: Dialog,
        done: Callable[[], None],
        *,
        authed: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        req = d.request("BYE", via=self.ua.via(new_branch()), user_agent=self.ua.user_agent)
        req.headers.add("Reason", 'Q.850;cause=16;text="Normal call clearing"')
        for name, value in extra or []:
            req.headers.add(name, value)

        def on_response(resp: SipResponse) -> None:
            if resp.status < 200:
                return
            if resp.status in (401, 407) and not authed:
                creds = self._credentials(resp, "BYE", req.uri)
                if creds:
                    self.log.info("BYE challenged (%d): re-sending with credentials", resp.status)
                    self._send_bye_on(d, done, authed=True, extra=creds)
                    return
            done()

        def on_timeout() -> None:
            self.log.warning("BYE got no response")
            done()

        proxy = self.ua.proxy_addr(self.trunk)
        self.ua.send_client(
            req,
            d.next_hop(proxy),
            on_response,
            on_timeout,
            trunk=self.trunk,
            uri_transport=d.next_hop_transport(proxy),
        )

    async def hangup(self, reason: str = "normal", *, by: HangupBy = "robot") -> None:
        if self.ended:
            return
        disp = Disposition.ANSWERED if self.state in ("confirmed", "ending") else Disposition.CANCELLED
        self.terminate(disp, by, reason)
        await self._ended.wait()

    # ---------------------------------------------------------------- finishing
    def _finish(
        self,
        disposition: Disposition,
        by: HangupBy,
        *,
        sip_code: int | None = None,
        reason: str | None = None,
        q850: int | None = None,
    ) -> None:
        if self.ended:
            return
        self.state = "ended"
        for name in list(self._timers):
            self._cancel_timer(name)
        info = self.info
        info.ended_at = self.ua.clock.now()
        info.disposition = disposition
        info.hangup_by = by
        if sip_code is not None:
            info.sip_code = sip_code
        if reason is not None:
            info.reason = reason
        if q850 is not None:
            info.q850_cause = q850
        self.log.info("ended: %s by %s (sip %s)", disposition.value, by, info.sip_code)
        if not self._answered.done():
            self._answered.set_exception(
                TelephonyError(
                    f"call {self.call_id} to {info.target} failed: {disposition.value}"
                    + (f" (SIP {info.sip_code})" if info.sip_code else ""),
                    disposition=disposition,
                    sip_code=info.sip_code,
                    q850_cause=info.q850_cause,
                    reason=info.reason,
                    retryable=disposition in (Disposition.FAILED, Disposition.UNREACHABLE),
                )
            )
            self._answered.exception()  # mark retrieved: nobody may be waiting
        if self._ack_waiter is not None and not self._ack_waiter.done():
            self._ack_waiter.set_exception(
                TelephonyError(f"call {self.call_id} ended before the ACK", disposition=disposition)
            )
            self._ack_waiter.exception()
        self._ended.set()
        if self.listener is not None:
            self.listener.on_ended()
        self.ua.call_ended(self)

    async def wait_answered(self) -> None:
        await asyncio.shield(self._answered)

    async def wait_ended(self) -> LegInfo:
        await self._ended.wait()
        return self.info

    # ---------------------------------------------------------------- in-dialog requests (both roles)
    def on_request(self, req: SipRequest, txn: ServerTransaction) -> None:
        m = req.method
        if self.dialog is not None and self.dialog.remote_seq is not None and m not in ("ACK", "CANCEL"):
            self.dialog.remote_seq = max(self.dialog.remote_seq, req.cseq[0])
        if m == "BYE":
            txn.respond(self.ua.response(req, 200))
            reason_hdr = req.headers.get("Reason")
            answered = self.state in ("confirmed", "ending")
            self.log.info("remote BYE")
            self._finish(
                Disposition.ANSWERED if answered else Disposition.CANCELLED,
                "callee",
                reason=reason_hdr or "remote hangup",
                q850=parse_q850_cause(reason_hdr),
            )
        elif m in ("INVITE", "UPDATE"):
            self._on_offer(req, txn)
        elif m == "OPTIONS":
            resp = self.ua.response(req, 200)
            resp.headers.add("Allow", ALLOW)
            resp.headers.add("Accept", "application/sdp")
            txn.respond(resp)
        elif m == "INFO":
            txn.respond(self.ua.response(req, 200))
            dtmf = parse_info_dtmf(req.content_type, req.body)
            if dtmf is not None and self.listener is not None:
                self.log.info("DTMF %s via INFO", dtmf[0])
                self.listener.on_dtmf(*dtmf)
        elif m == "PRACK":
            txn.respond(self.ua.response(req, 200))
        else:
            resp = self.ua.response(req, 501)
            resp.headers.add("Allow", ALLOW)
            txn.respond(resp)

    def _on_offer(self, req: SipRequest, txn: ServerTransaction) -> None:
        if self.ended or self.dialog is None or self.listener is None:
            txn.respond(self.ua.response(req, 481))
            return
        host, port = self.listener.local_media()
        self.sdp_version += 1
        neg: NegotiatedMedia | None = None
        if req.body.strip():
            try:
                body, neg = answer_offer(
                    req.body,
                    self.ua.media_address(host),
                    port,
                    session_id=self.sdp_session_id,
                    version=self.sdp_version,
                    codecs=self.ua.codecs,
                )
            except SdpError as e:
                self.log.warning("%s offer not acceptable: %s", req.method, e)
                txn.respond(self.ua.response(req, 488))
                return
        else:
            body = build_offer(
                self.ua.media_address(host),
                port,
                session_id=self.sdp_session_id,
                version=self.sdp_version,
                codecs=self.ua.codecs,
            )
        resp = self.ua.response(req, 200, body=body)
        resp.headers.add("Contact", self.ua.contact())
        se = req.headers.get("Session-Expires")
        if se:
            resp.headers.add("Session-Expires", se)
        txn.respond(resp)
        if req.method == "INVITE":
            from gateway.sip.transaction import ServerInviteTransaction

            if isinstance(txn, ServerInviteTransaction):
                self._pending_2xx = txn
        if neg is not None and neg != self.media:
            self.log.info("remote media changed to %s:%d (%s)", neg.host, neg.port, neg.codec)
            self.media = neg
            self.info.remote_media = f"{neg.host}:{neg.port}"
            self.listener.on_media_changed(neg)

    def on_ack(self, req: SipRequest) -> None:
        txn = self._pending_2xx
        if txn is not None and txn.request.cseq[0] == req.cseq[0]:
            txn.ack_received()
            self._pending_2xx = None
            if req.body.strip() and self.listener is not None:
                try:
                    neg = parse_answer(req.body, codecs=self.ua.codecs)
                except SdpError as e:
                    self.log.warning("unusable SDP in ACK: %s", e)
                else:
                    if self.media is None:  # we offered in the 200 (delayed offer): this is the answer
                        self.media = neg
                        self.info.codec = neg.codec
                        self.info.remote_media = f"{neg.host}:{neg.port}"
                        self.listener.on_answered(neg)
                    elif neg != self.media:
                        self.media = neg
                        self.listener.on_media_changed(neg)
            if self._ack_waiter is not None and not self._ack_waiter.done():
                self._ack_waiter.set_result(None)

    # ---------------------------------------------------------------- UAS: being called
    def accept_invite(self, req: SipRequest, txn: ServerInviteTransaction, local_tag: str) -> None:
        self.invite = req
        self._server_txn = txn
        self.local_tag = local_tag
        txn.on_no_ack = self._no_ack

    def _uas_response(self, code: int, *, body: bytes = b"", reason: str | None = None) -> SipResponse:
        assert self.invite is not None
        resp = self.ua.response(self.invite, code, reason=reason, to_tag=self.local_tag, body=body)
        if code < 300:
            for rr in self.invite.headers.get_all("Record-Route"):
                resp.headers.add("Record-Route", rr)
            resp.headers.add("Contact", self.ua.contact())
        return resp

    def ring(self) -> None:
        if self._ringing_sent or self.state != "calling" or self._server_txn is None:
            return
        self._ringing_sent = True
        self._server_txn.respond(self._uas_response(180))

    async def answer(self) -> None:
        """Send 200 OK with our SDP; return once the caller's ACK arrives."""
        if self.role != "uas" or self.invite is None or self._server_txn is None:
            raise RuntimeError("answer() is for incoming calls")
        if self.ended:
            raise TelephonyError(
                f"call {self.call_id} already ended",
                disposition=self.info.disposition or Disposition.CANCELLED,
            )
        if self.state == "confirmed":
            return
        assert self.listener is not None
        self.ring()
        host, port = self.listener.local_media()
        addr = self.ua.media_address(host)
        if self.invite.body.strip():
            try:
                body, neg = answer_offer(
                    self.invite.body, addr, port, session_id=self.sdp_session_id, codecs=self.ua.codecs
                )
            except SdpError as e:
                self.reject(488)
                raise TelephonyError(
                    f"cannot answer: {e}", disposition=Disposition.FAILED, sip_code=488
                ) from None
            self.media = neg
        else:
            body = build_offer(addr, port, session_id=self.sdp_session_id, codecs=self.ua.codecs)
        resp = self._uas_response(200, body=body)
        self.dialog = Dialog.from_uas(self.invite, self.local_tag)
        self._pending_2xx = self._server_txn
        self._ack_waiter = asyncio.get_running_loop().create_future()
        self._server_txn.respond(resp)
        self.state = "confirmed"
        self.info.answered_at = self.ua.clock.now()
        self.info.sip_code = 200
        if self.media is not None:
            self.info.codec = self.media.codec
            self.info.remote_media = f"{self.media.host}:{self.media.port}"
        self.log.info("answered incoming call")
        if not self._answered.done():
            self._answered.set_result(None)
        if self.media is not None:
            self.listener.on_answered(self.media)
        await asyncio.shield(self._ack_waiter)

    def _no_ack(self) -> None:
        if self.state == "confirmed" and self._pending_2xx is self._server_txn:
            self.log.warning("no ACK for our 200 OK (timer H): hanging up")
            self._send_bye(Disposition.FAILED, "system", "no ACK")

    def reject(
        self,
        code: int = 486,
        *,
        reason: str | None = None,
        disposition: Disposition | None = None,
        by: HangupBy = "robot",
    ) -> None:
        if self.ended or self.state == "confirmed" or self._server_txn is None:
            return
        self.log.info("rejecting incoming call with %d", code)
        self._server_txn.respond(self._uas_response(code, reason=reason))
        self._finish(disposition or from_sip(code), by, sip_code=code, reason=reason or REASONS.get(code))

    def on_cancel(self) -> None:
        """The caller cancelled before we answered: 487 for the INVITE."""
        if self.ended or self.state == "confirmed" or self._server_txn is None:
            return
        self.log.info("caller cancelled")
        self._server_txn.respond(self._uas_response(487))
        self._finish(Disposition.CANCELLED, "callee", sip_code=487, reason="cancelled by caller")


def caller_id_headers(
    trunk: Trunk, caller_id: str | None, domain: str, headers: Mapping[str, str] | None
) -> tuple[str, list[tuple[str, str]]]:
    """The From user and extra headers for a caller ID according to the trunk's mode and privacy."""
    extra: list[tuple[str, str]] = []
    from_user = trunk.from_user or trunk.auth_user or caller_id or "outcall"
    if caller_id:
        uri = f"<sip:{caller_id}@{domain}>"
        if trunk.caller_id_mode == "from":
            from_user = caller_id
        elif trunk.caller_id_mode == "pai":
            extra.append(("P-Asserted-Identity", uri))
        else:
            privacy = "full" if trunk.privacy == "id" else "off"
            extra.append(("Remote-Party-ID", f"{uri};party=calling;screen=yes;privacy={privacy}"))
    if trunk.privacy == "id":
        extra.append(("Privacy", "id"))
    for k, v in (headers or {}).items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k:
            raise SipParseError(f"extra header {k!r} has CR/LF or ':'")
        extra.append((k, v))
    return from_user, extra
