"""SIP transactions (RFC 3261 section 17, RFC 6026): retransmissions and timers.

Timers run on the event loop (`loop.call_later`); nothing here blocks or owns a task, so thousands of
transactions cost one timer handle each. Over a reliable transport (TCP) nothing is retransmitted.

- ClientInviteTransaction: timer A (retransmit INVITE from T1, doubling), B (64*T1 without any response),
  D (absorb final-response retransmissions, re-sending the hop-by-hop ACK for 3xx-6xx). A 2xx moves it to
  Accepted (RFC 6026) for 64*T1 so retransmitted or forked 2xx still reach the call.
- ClientNonInviteTransaction: timer E (retransmit, capped at T2), F (64*T1), K (T4).
- ServerInviteTransaction: absorbs INVITE retransmissions with the last response; retransmits a 3xx-6xx
  (timer G) until ACK (timer H), and a 2xx (we are the callee) until the dialog's ACK arrives.
- ServerNonInviteTransaction: answers retransmitted requests with the last response (timer J).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from gateway.sip.message import SipRequest, SipResponse


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        return 64 * self.t1


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


Send = Callable[[bytes], None]


class _Txn:
    def __init__(self, timers: Timers, reliable: bool, on_terminated: Callable[[_Txn], None] | None) -> None:
        self.timers = timers
        self.reliable = reliable
        self.state = State.TRYING
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._on_terminated = on_terminated

    def _start_timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._stop_timer(name)
        self._handles[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, fn)

    def _fire(self, name: str, fn: Callable[[], None]) -> None:
        self._handles.pop(name, None)
        if self.state is not State.TERMINATED:
            fn()

    def _stop_timer(self, name: str) -> None:
        h = self._handles.pop(name, None)
        if h is not None:
            h.cancel()

    def terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        for h in self._handles.values():
            h.cancel()
        self._handles.clear()
        if self._on_terminated is not None:
            self._on_terminated(self)


class ClientTransaction(_Txn):
    """Base of the two client transactions. `on_response` gets every response the TU should see;
    `on_timeout` fires once when timer B/F expires (or the transport failed)."""

    def __init__(
        self,
        request: SipRequest,
        send: Send,
        *,
        timers: Timers,
        reliable: bool,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
        on_terminated: Callable[[_Txn], None] | None = None,
    ) -> None:
        super().__init__(timers, reliable, on_terminated)
        self.request = request
        self.data = request.to_bytes()
        self.send = send
        self.on_response = on_response
        self.on_timeout = on_timeout
        via = request.top_via
        self.branch = via.branch or ""
        self.method = request.method

    @property
    def key(self) -> tuple[str, str]:
        return self.branch, self.method

    def start(self) -> None:
        raise NotImplementedError

    def receive(self, resp: SipResponse) -> None:
        raise NotImplementedError

    def fail(self) -> None:
        """The transport could not deliver the request: act as if the timeout fired now."""
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.terminate()
            self.on_timeout()

    def _timeout(self) -> None:
        self.terminate()
        self.on_timeout()


class ClientInviteTransaction(ClientTransaction):
    def start(self) -> None:
        self.state = State.CALLING
        self.send(self.data)
        if not self.reliable:
            self._retransmit_interval = self.timers.t1
            self._start_timer("A", self._retransmit_interval, self._timer_a)
        self._start_timer("B", self.timers.b, self._timeout)

    def _timer_a(self) -> None:
        if self.state is not State.CALLING:
            return
        self.send(self.data)
        self._retransmit_interval *= 2
        self._start_timer("A", self._retransmit_interval, self._timer_a)

    def receive(self, resp: SipResponse) -> None:
        code = resp.status
        if self.state in (State.CALLING, State.PROCEEDING):
            if code < 200:
                self.state = State.PROCEEDING
                self._stop_timer("A")
                self._stop_timer("B")
                self.on_response(resp)
            elif code < 300:
                self.state = State.ACCEPTED
                self._stop_timer("A")
                self._stop_timer("B")
                self._start_timer("M", self.timers.b, self.terminate)
                self.on_response(resp)
            else:
                self.state = State.COMPLETED
                self._stop_timer("A")
                self._stop_timer("B")
                self._ack_data = self._build_ack(resp).to_bytes()
                self.send(self._ack_data)
                self._start_timer("D", 0.0 if self.reliable else max(32.0, self.timers.b / 2), self.terminate)
                self.on_response(resp)
        elif self.state is State.ACCEPTED:
            if 200 <= code < 300:
                self.on_response(resp)  # retransmitted or forked 2xx: the TU ACKs it again
        elif self.state is State.COMPLETED and code >= 300:
            self.send(self._ack_data)

    def _build_ack(self, resp: SipResponse) -> SipRequest:
        """RFC 3261 17.1.1.3: ACK for a non-2xx final response, same branch, hop by hop."""
        req = self.request
        ack = SipRequest(method="ACK", uri=req.uri)
        ack.headers.add("Via", req.headers.values("Via")[0])
        for route in req.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", req.headers["From"])
        ack.headers.add("To", resp.headers["To"])
        ack.headers.add("Call-ID", req.headers["Call-ID"])
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        return ack


class ClientNonInviteTransaction(ClientTransaction):
    def start(self) -> None:
        self.state = State.TRYING
        self.send(self.data)
        if not self.reliable:
            self._retransmit_interval = self.timers.t1
            self._start_timer("E", self._retransmit_interval, self._timer_e)
        self._start_timer("F", self.timers.b, self._timeout)

    def _timer_e(self) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self.send(self.data)
        if self.state is State.TRYING:
            self._retransmit_interval = min(self._retransmit_interval * 2, self.timers.t2)
        else:
            self._retransmit_interval = self.timers.t2
        self._start_timer("E", self._retransmit_interval, self._timer_e)

    def receive(self, resp: SipResponse) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # retransmitted final response: absorbed
        if resp.status < 200:
            self.state = State.PROCEEDING
            self.on_response(resp)
            return
        self.state = State.COMPLETED
        self._stop_timer("E")
        self._stop_timer("F")
        self._start_timer("K", 0.0 if self.reliable else self.timers.t4, self.terminate)
        self.on_response(resp)


class ServerTransaction(_Txn):
    def __init__(
        self,
        request: SipRequest,
        send: Send,
        *,
        timers: Timers,
        reliable: bool,
        on_terminated: Callable[[_Txn], None] | None = None,
    ) -> None:
        super().__init__(timers, reliable, on_terminated)
        self.request = request
        self.send = send
        self.last_response: bytes | None = None
        self.final_status: int | None = None
        self.state = self.initial_state
        self.on_no_ack: Callable[[], None] | None = None

    initial_state = State.TRYING

    def retransmission(self) -> None:
        """The same request arrived again: answer with the last response (if any)."""
        if self.last_response is not None and self.state is not State.TERMINATED:
            self.send(self.last_response)

    def respond(self, resp: SipResponse) -> None:
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    """`on_no_ack` fires when a 2xx or 3xx-6xx was never acknowledged (timer H)."""

    initial_state = State.PROCEEDING

    def respond(self, resp: SipResponse) -> None:
        if self.state not in (State.PROCEEDING,):
            return
        self.last_response = resp.to_bytes()
        self.send(self.last_response)
        if resp.status < 200:
            return
        self.final_status = resp.status
        self.state = State.ACCEPTED if resp.status < 300 else State.COMPLETED
        if not self.reliable:
            self._interval = self.timers.t1
            self._start_timer("G", self._interval, self._timer_g)
        self._start_timer("H", self.timers.b, self._timer_h)

    def _timer_g(self) -> None:
        if self.state not in (State.ACCEPTED, State.COMPLETED) or self.last_response is None:
            return
        self.send(self.last_response)
        self._interval = min(self._interval * 2, self.timers.t2)
        self._start_timer("G", self._interval, self._timer_g)

    def _timer_h(self) -> None:
        self.terminate()
        if self.on_no_ack is not None:
            self.on_no_ack()

    def ack_received(self) -> None:
        if self.state in (State.ACCEPTED, State.COMPLETED):
            self._stop_timer("G")
            self._stop_timer("H")
            self.state = State.CONFIRMED
            self._start_timer("I", 0.0 if self.reliable else self.timers.t4, self.terminate)


class ServerNonInviteTransaction(ServerTransaction):
    def respond(self, resp: SipResponse) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self.last_response = resp.to_bytes()
        self.send(self.last_response)
        if resp.status < 200:
            self.state = State.PROCEEDING
            return
        self.final_status = resp.status
        self.state = State.COMPLETED
        self._start_timer("J", 0.0 if self.reliable else self.timers.b, self.terminate)
