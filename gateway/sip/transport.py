"""SIP transports on one asyncio loop: one UDP socket for every call, plus TCP (RFC 3261 18).

Requests larger than `tcp_threshold` (1300 bytes, RFC 3261 18.1.1) go over TCP; a TCP listener on the same
port accepts peers that do the same. Datagrams that do not parse are logged in one line and dropped: bad
input never disturbs other calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from gateway.sip.message import SipMessage, SipParseError, frame_stream, parse_message

log = logging.getLogger("gateway.sip.transport")

Addr = tuple[str, int]
TransportName = Literal["UDP", "TCP"]
MAX_DATAGRAM = 65535
#: the SIP socket's receive buffer: a burst of responses (hundreds of 100/183 within milliseconds when a
#: campaign dials at once) must wait in the kernel while the loop is busy, not be dropped (a dropped 1xx
#: means INVITE retransmissions, which strict peers take for a new call)
UDP_RCVBUF = 8 * 1024 * 1024


def _grow_rcvbuf(sock: Any, size: int) -> int:
    """Raise SO_RCVBUF to `size` (SO_RCVBUFFORCE past net.core.rmem_max when privileged); the result."""
    if sock is None:
        return 0
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            break
        except OSError:
            continue
    got = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if got < size:
        log.info("SIP UDP receive buffer is %d bytes (asked %d; raise net.core.rmem_max)", got, size)
    return got


@dataclass(frozen=True, eq=False)
class Source:
    """Where a message came from; responses to a request go back the same way."""

    addr: Addr
    transport: TransportName = "UDP"
    conn: TcpConnection | None = None


MessageHandler = Callable[[SipMessage, Source], None]
SendErrorHandler = Callable[[Addr, TransportName, Exception], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error (ignored): %s", exc)


class TcpConnection:
    """One TCP connection (client or accepted); frames the stream into messages."""

    def __init__(self, owner: SipTransport, addr: Addr) -> None:
        self.owner = owner
        self.addr = addr
        self.writer: asyncio.StreamWriter | None = None
        self._pending: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.writer is None:
            self._pending.append(data)
        else:
            self.writer.write(data)

    async def connect(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.addr[0], self.addr[1])
        except OSError as e:
            log.warning("TCP connect to %s:%d failed: %s", self.addr[0], self.addr[1], e)
            self.close()
            self.owner._send_failed(self.addr, "TCP", e)
            return
        await self.run(reader, writer)

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        for data in self._pending:
            writer.write(data)
        self._pending.clear()
        buf = bytearray()
        try:
            while not self.closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    try:
                        frame = frame_stream(buf)
                    except SipParseError as e:
                        log.warning("dropping TCP connection %s:%d: %s", self.addr[0], self.addr[1], e)
                        return
                    if frame is None:
                        break
                    self.owner._on_frame(frame, Source(self.addr, "TCP", self))
        except (OSError, asyncio.IncompleteReadError) as e:
            log.debug("TCP connection %s:%d ended: %s", self.addr[0], self.addr[1], e)
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.owner._forget(self)
        if self.writer is not None:
            self.writer.close()


class SipTransport:
    """UDP socket (and TCP) for a UserAgent. `handler(message, source)` gets every parsed message."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        tcp: bool = True,
        tcp_threshold: int = 1300,
        on_send_error: SendErrorHandler | None = None,
    ) -> None:
        self.handler = handler
        self.bind_host = bind_host
        self.bind_port = bind_port
        self.tcp_enabled = tcp
        self.tcp_threshold = tcp_threshold
        self.on_send_error = on_send_error
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, TcpConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.local_addr: Addr = (bind_host, bind_port)
        self.dropped = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.bind_host, self.bind_port)
        )
        self._udp = transport
        self.rcvbuf = _grow_rcvbuf(transport.get_extra_info("socket"), UDP_RCVBUF)
        sock = transport.get_extra_info("sockname")
        self.local_addr = (sock[0], sock[1])
        if self.tcp_enabled:
            try:
                self._server = await asyncio.start_server(self._accept, self.bind_host, self.local_addr[1])
            except OSError as e:
                log.warning("no TCP listener on %s:%d (%s); TCP is client-only", *self.local_addr, e)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._conns.values()):
            conn.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def use_tcp(self, size: int) -> bool:
        """RFC 3261 18.1.1: a request within 200 bytes of the path MTU goes over a congestion-controlled
        transport."""
        return self.tcp_enabled and size > self.tcp_threshold

    def send(
        self, data: bytes, addr: Addr, *, transport: TransportName = "UDP", conn: TcpConnection | None = None
    ) -> None:
        if transport == "TCP":
            if conn is None or conn.closed:
                conn = self._conns.get(addr)
            if conn is None or conn.closed:
                conn = TcpConnection(self, addr)
                self._conns[addr] = conn
                self._spawn(conn.connect())
            conn.send(data)
            return
        if self._udp is None:
            raise RuntimeError("SIP transport is not started")
        self._udp.sendto(data, addr)

    # --- internals ---
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = TcpConnection(self, (peer[0], peer[1]))
        self._conns[conn.addr] = conn
        await conn.run(reader, writer)

    def _forget(self, conn: TcpConnection) -> None:
        if self._conns.get(conn.addr) is conn:
            del self._conns[conn.addr]

    def _send_failed(self, addr: Addr, transport: TransportName, exc: Exception) -> None:
        if self.on_send_error is not None:
            self.on_send_error(addr, transport, exc)

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        self._on_frame(data, Source(addr, "UDP", None))

    def _on_frame(self, data: bytes, source: Source) -> None:
        try:
            msg = parse_message(data, stream=source.transport == "TCP")
        except SipParseError as e:
            self.dropped += 1
            log.warning(
                "dropped unparsable SIP %s message from %s:%d (%d bytes): %s",
                source.transport,
                source.addr[0],
                source.addr[1],
                len(data),
                e,
            )
            return
        try:
            self.handler(msg, source)
        except SipParseError as e:
            self.dropped += 1
            log.warning(
                "dropped SIP message from %s:%d (call %s): %s",
                source.addr[0],
                source.addr[1],
                msg.call_id,
                e,
            )
        except Exception:
            self.dropped += 1
            log.exception(
                "error handling SIP message from %s:%d (call %s); dropped",
                source.addr[0],
                source.addr[1],
                msg.call_id,
            )
