"""One RTP media session (G.711 + RFC 4733) on the shared media ticker.

    rtp = await RtpSession.create(call_id=cid, port_range=(20000, 30000))
    sdp_offer(..., rtp.local_host, rtp.local_port)
    rtp.set_remote(host, port, codec="PCMU", payload_type=0)   # again when 200 OK moves the media
    rtp.start()                                                # silence goes out at once, SBCs latch
    rtp.playout.play(pcm)                                      # the ticker pulls playout.next_frame()
    async for frame in rtp.frames(): ...                       # 20 ms int16 frames, silence on loss
    await rtp.close()

Everything runs on the event loop; the socket's datagram callback parses, accounts and files packets into
the jitter buffer; the ticker does all sending and frame production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE, frames_of, silence
from engine.call.playback import Playout
from engine.clock import Clock
from engine.errors import ConfigError

from .codecs import COMFORT_NOISE_PT, STATIC_PAYLOAD_TYPES, Codec, get_codec, samples_per_packet
from .dtmf import EVENTS, GoertzelDetector, decode_event, digit_event, encode_event, tone, validate_digits
from .jitter import DUPLICATE, JitterBuffer
from .packet import PacketError, pack_header_into, payload_offset
from .ticker import Histogram, MediaTicker

log = logging.getLogger(__name__)

Address = tuple[str, int]
_SEQ_TS_SSRC = struct.Struct("!HII")
_HEADER = struct.Struct("!BBHII")
_TIMESPEC = struct.Struct("@qq")
_SOL_SOCKET = socket.SOL_SOCKET
_SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else 0)
_MAX_DATAGRAM = 2048
_ANC_SIZE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 64
_DTMF_GAP_TICKS = 3  # 60 ms of audio between digits
_DTMF_END_REPEATS = 3
_DTMF_STALE_S = 0.5  # an event with no end packet for this long is reported anyway
_BATCH_DTMF_CONFIG = GoertzelDetector().config  # what the ticker's shared in-band classifier uses


@dataclass(slots=True)
class _DtmfJob:
    digits: str
    duration_samples: int
    done: asyncio.Future[None]
    index: int = 0


class RtpSession:
    """See module docstring. Create with `await RtpSession.create(...)`."""

    def __init__(
        self,
        *,
        call_id: str,
        inactivity_timeout: float,
        ticker: MediaTicker,
        queue_frames: int = 50,
    ) -> None:
        self.call_id = call_id
        self.inactivity_timeout = inactivity_timeout
        self.playout = Playout()
        #: taps both directions, one frame each per tick (gateway.recording.CallRecorder)
        self.recorder: FrameTap | None = None
        self.on_dtmf: Callable[[str, int], None] | None = None
        self.on_timeout: Callable[[float], None] | None = None
        #: when set, each inbound 20 ms frame goes to this callback inside the ticker's tick instead of
        #: the frames() queue (gateway.bridge relays it to the other leg in the same tick)
        self.on_frame: Callable[[PCM], None] | None = None
        #: send in the ticker's late phase, after this tick's inbound frames (see MediaTicker._tick_all)
        self.late_send = False
        #: latch onto the source address of the first RTP packet after set_remote (symmetric RTP / NAT)
        self.latch = True
        #: in-band (Goertzel) DTMF detection; None = on when no telephone-event payload type was negotiated
        self.inband_dtmf: bool | None = None
        #: how the last reported DTMF digit arrived: "rfc4733" or "inband"
        self.dtmf_method: Literal["rfc4733", "inband"] = "rfc4733"
        self.local_host = ""
        self.local_port = 0
        self._ticker = ticker
        self._now = ticker.now
        self._sock: socket.socket | None = None
        self._fd = -1
        self._queue: deque[PCM | None] = deque()
        self._queue_max = queue_frames
        self._waiter: asyncio.Future[None] | None = None
        self._jb = JitterBuffer()
        self._started = False
        self._closed = False
        # outbound
        self._codec: Codec | None = None
        self._pt = 0
        self._dtmf_pt: int | None = None
        self._sdp_addr: Address | None = None
        self._send_addr: Address | None = None
        self._latched: Address | None = None
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._marker = True
        self._spp = FRAME_SAMPLES
        self._buf = bytearray(12 + FRAME_SAMPLES)
        self._payload: npt.NDArray[np.uint8] = np.frombuffer(self._buf, dtype=np.uint8, offset=12)
        self._silence_payload = b""
        self._acc = np.zeros(0, dtype=np.int16)
        self._fill = 0
        self._ev_buf = bytearray(16)
        self._dtmf_jobs: deque[_DtmfJob] = deque()
        self._ev_code: int | None = None
        self._ev_ts = 0
        self._ev_ticks = 0
        self._ev_ends = 0
        self._gap_left = 0
        self._inject: deque[tuple[PCM, asyncio.Future[None] | None]] = deque()
        # inbound
        self._decode: dict[int, npt.NDArray[np.int16]] = {
            pt: get_codec(name).decode_table for pt, name in STATIC_PAYLOAD_TYPES.items()
        }
        self._rx_buf = bytearray(_MAX_DATAGRAM)
        self._rx_bufs = [self._rx_buf]
        self._rx_view: npt.NDArray[np.uint8] = np.frombuffer(self._rx_buf, dtype=np.uint8)
        self._last_rx = 0.0
        self._timeout_fired = False
        self._rx_ssrc: int | None = None
        self._rx_base = 0
        self._rx_max = 0
        self._rx_cycles = 0
        self._rx_received = 0
        self._rx_expected_prior = 0
        self._rx_received_prior = 0
        self._jit_last_arrival = 0.0
        self._jit_last_ts = 0
        self._jitter = 0.0  # samples
        self._dtmf_rx_ts: int | None = None
        self._dtmf_rx_event = 0
        self._dtmf_rx_dur = 0
        self._dtmf_rx_seen = 0.0
        self._dtmf_done: deque[int] = deque(maxlen=16)
        self._detector: GoertzelDetector | None = None
        self._batch_det: GoertzelDetector | None = None  # the detector last found to match the ticker's
        # counters
        self.send_jitter = Histogram()
        self._packets_sent = 0
        self._bytes_sent = 0
        self._packets_received = 0
        self._bytes_received = 0
        self._malformed = 0
        self._foreign = 0
        self._unknown_pt = 0
        self._rtcp_received = 0
        self._cn_received = 0
        self._frames_dropped = 0
        self._frames_out = 0
        self._ticks_skipped = 0
        self._dtmf_sent = 0
        self._dtmf_received = 0
        self._socket_errors = 0
        self._send_dropped = 0

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        *,
        bind_host: str = "127.0.0.1",
        port_range: tuple[int, int] | None = None,
        call_id: str = "",
        inactivity_timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> RtpSession:
        self = cls(call_id=call_id, inactivity_timeout=inactivity_timeout, ticker=MediaTicker.get(clock))
        sock = _bind_even(bind_host, port_range)
        self._sock = sock
        self._fd = sock.fileno()
        host, port = sock.getsockname()[:2]
        self.local_host, self.local_port = str(host), int(port)
        return self

    def fileno(self) -> int:
        return self._fd

    # --- control ------------------------------------------------------------------------------------

    def set_remote(
        self,
        host: str,
        port: int,
        *,
        codec: Literal["PCMU", "PCMA"],
        payload_type: int,
        ptime_ms: int = 20,
        dtmf_payload_type: int | None = 101,
    ) -> None:
        """Where to send and how. May be called again (183 -> 200 with another address or codec)."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"RTP remote host {host!r} is not an IP address",
                hint="the SDP c= line must carry an IPv4/IPv6 address",
            ) from None
        if not 0 < port < 65536:
            raise ConfigError(f"RTP remote port {port} out of range 1..65535")
        if not 0 <= payload_type < 128:
            raise ConfigError(f"RTP payload type {payload_type} out of range 0..127")
        if dtmf_payload_type is not None and not 96 <= dtmf_payload_type < 128:
            raise ConfigError(
                f"telephone-event payload type {dtmf_payload_type} out of dynamic range 96..127"
            )
        c = get_codec(codec)
        spp = samples_per_packet(ptime_ms)
        self._codec = c
        self._pt = payload_type
        self._dtmf_pt = dtmf_payload_type
        self._decode[payload_type] = c.decode_table
        if dtmf_payload_type is not None:
            self._decode.pop(dtmf_payload_type, None)
        if spp != self._spp or not self._silence_payload:
            self._spp = spp
            self._buf = bytearray(12 + spp)
            self._payload = np.frombuffer(self._buf, dtype=np.uint8, offset=12)
            self._acc = np.zeros(spp + FRAME_SAMPLES, dtype=np.int16)
            self._fill = 0
        self._silence_payload = c.silence_payload(spp)
        self._sdp_addr = (host, port)
        self._send_addr = (host, port)
        self._latched = None
        enabled = self.inband_dtmf if self.inband_dtmf is not None else dtmf_payload_type is None
        self._detector = GoertzelDetector() if enabled else None

    def start(self) -> None:
        """Join the media ticker: send every 20 ms from now on (silence when nothing is queued)."""
        if self._closed:
            raise RuntimeError(f"rtp {self.call_id}: start() after close()")
        if self._started:
            return
        self._started = True
        self._flush_socket()  # anything that arrived before start is stale
        self._jb.reset()
        self._last_rx = self._now()
        if self._detector is None and self.inband_dtmf:
            self._detector = GoertzelDetector()
        self._ticker.add(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ticker.remove(self)
        if self._sock is not None:
            self._sock.close()
        for job in self._dtmf_jobs:
            if not job.done.done():
                job.done.set_result(None)
        self._dtmf_jobs.clear()
        for _, fut in self._inject:
            if fut is not None and not fut.done():
                fut.set_result(None)
        self._inject.clear()
        self._push(None)

    def set_jitter_min_ms(self, ms: float) -> float:
        """Set the jitter buffer's smallest target delay (default 40 ms; the target still adds 2 x the
        measured interarrival jitter); returns the previous one. A bridge lowers it: the far ends' own
        jitter buffers smooth the audio."""
        jb = self._jb
        old = jb.min_target * 1000.0 / SAMPLE_RATE
        jb.min_target = max(0, min(int(ms * SAMPLE_RATE / 1000), jb.max_latency - jb.frame))
        jb.set_jitter(jb.jitter_samples)
        return old

    @property
    def started(self) -> bool:
        return self._started

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def remote_address(self) -> Address | None:
        """Where packets go now (the latched source when latching moved it)."""
        return self._send_addr

    # --- audio in -----------------------------------------------------------------------------------

    async def frames(self) -> AsyncIterator[PCM]:
        """Inbound 20 ms frames, one per tick after start(); ends after close(). One reader.

        The queue is bounded (`queue_frames`, 1 s): a reader that falls behind loses the oldest frames
        (counted in stats()['frames_dropped']) rather than hearing the past late."""
        q = self._queue
        loop = asyncio.get_running_loop()
        while True:
            while not q:
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiter = waiter
                try:
                    await waiter
                finally:
                    self._waiter = None
            frame = q.popleft()
            if frame is None:
                return
            yield frame

    def _push(self, frame: PCM | None) -> None:
        q = self._queue
        if len(q) >= self._queue_max:
            q.popleft()
            self._frames_dropped += 1
        q.append(frame)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # --- DTMF out -----------------------------------------------------------------------------------

    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Send digits as RFC 4733 events (end packet x3), or as in-band tones when no telephone-event
        payload type was negotiated. Returns when the last digit has gone out (or the session closed)."""
        digits = validate_digits(digits)
        if not digits or self._closed:
            return
        if not 40 <= duration_ms <= 8000:
            raise ValueError(f"DTMF duration {duration_ms} ms out of range 40..8000")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._dtmf_pt is None and self._codec is not None:
            frames: list[PCM] = []
            for d in digits:
                frames += frames_of(tone(d, duration_ms))
                frames += [silence()] * _DTMF_GAP_TICKS
            for i, f in enumerate(frames):
                self._inject.append((f, fut if i == len(frames) - 1 else None))
        else:
            self._dtmf_jobs.append(_DtmfJob(digits, duration_ms * SAMPLE_RATE // 1000, fut))
        await fut

    def _dtmf_tick(self, deadline: float) -> bool:
        """Send this tick's telephone-event packet if an event is in progress; True when one was sent."""
        while True:
            if self._gap_left > 0:
                self._gap_left -= 1
                return False
            job = self._dtmf_jobs[0]
            if self._ev_code is None:
                if job.index >= len(job.digits):
                    self._dtmf_jobs.popleft()
                    if not job.done.done():
                        job.done.set_result(None)
                    if not self._dtmf_jobs:
                        return False
                    continue
                self._ev_code = digit_event(job.digits[job.index])
                self._ev_ts = self._ts + self._fill
                self._ev_ticks = 0
                self._ev_ends = 0
                marker = True
            else:
                marker = False
            break
        self._ev_ticks += 1
        elapsed = self._ev_ticks * FRAME_SAMPLES
        end = elapsed >= job.duration_samples
        if end:
            self._ev_ends += 1
        buf = self._ev_buf
        assert self._dtmf_pt is not None
        pack_header_into(buf, self._dtmf_pt, marker, self._seq, self._ev_ts, self._ssrc)
        buf[12:16] = encode_event(self._ev_code, end=end, duration=min(elapsed, job.duration_samples))
        self._send(buf, deadline)
        if self._ev_ends >= _DTMF_END_REPEATS:
            self._ev_code = None
            job.index += 1
            self._dtmf_sent += 1
            self._gap_left = _DTMF_GAP_TICKS
        return True

    # --- ticker callbacks ---------------------------------------------------------------------------

    def _send(self, buf: bytearray, deadline: float) -> None:
        sock = self._sock
        if sock is None:
            return
        t = self._now()
        try:
            sock.sendto(buf, self._send_addr)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            self._send_dropped += 1  # kernel buffer full: late audio is worthless, drop it
        except OSError as e:
            self._socket_errors += 1
            if self._socket_errors in (1, 100, 10000):
                log.warning("rtp %s: send to %s failed: %s", self.call_id, self._send_addr, e)
        self._seq = (self._seq + 1) & 0xFFFF
        self._packets_sent += 1
        self._bytes_sent += len(buf)
        self.send_jitter.record(t - deadline if t >= deadline else deadline - t)

    def _tick(self, deadline: float) -> None:
        """One whole tick for this session alone (the ticker runs the two halves for all sessions)."""
        self._tick_out(deadline)
        frame = self._tick_in(deadline)
        if frame is not None:
            assert self._detector is not None
            self._dtmf_classified(self._detector.classify(frame))

    def _tick_out(self, deadline: float) -> None:
        """Outbound half of a tick: one 20 ms frame of media time."""
        if self._closed:
            return
        if self._send_addr is not None and self._codec is not None:
            if self._dtmf_jobs and self._dtmf_tick(deadline):
                self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
                if self.recorder is not None:
                    self.recorder.outbound(None)
            else:
                if self._inject:
                    frame, fut = self._inject.popleft()
                    voice = True
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                else:
                    frame, voice = self.playout.next_frame()
                if self.recorder is not None:
                    self.recorder.outbound(frame if voice else None)
                spp = self._spp
                if spp == FRAME_SAMPLES:
                    buf = self._buf
                    if voice:
                        self._codec.encode_into(frame, self._payload)
                    else:
                        buf[12:] = self._silence_payload
                    if self._marker:
                        pack_header_into(buf, self._pt, True, self._seq, self._ts, self._ssrc)
                        self._marker = False
                    else:  # the hot path: pack_header_into inlined
                        _HEADER.pack_into(buf, 0, 0x80, self._pt, self._seq, self._ts, self._ssrc)
                    self._send(buf, deadline)
                    self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
                else:
                    self._acc[self._fill : self._fill + FRAME_SAMPLES] = frame
                    self._fill += FRAME_SAMPLES
                    while self._fill >= spp:
                        self._codec.encode_into(self._acc[:spp], self._payload)
                        pack_header_into(self._buf, self._pt, self._marker, self._seq, self._ts, self._ssrc)
                        self._marker = False
                        self._send(self._buf, deadline)
                        self._ts = (self._ts + spp) & 0xFFFFFFFF
                        self._fill -= spp
                        if self._fill:
                            self._acc[: self._fill] = self._acc[spp : spp + self._fill]
        else:
            self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
            if self.recorder is not None:
                self.recorder.outbound(None)

    def _tick_in(self, deadline: float) -> PCM | None:
        """Inbound half of a tick: one frame from the jitter buffer to frames(), and the timers.

        Returns the frame when in-band DTMF detection wants it classified: the ticker classifies the
        frames of all sessions in one vectorised call and hands each result to `_dtmf_classified`."""
        if self._closed:
            return None
        jb = self._jb
        if self._jitter != jb.jitter_samples:
            jb.set_jitter(self._jitter)
        frame_in, _real = jb.pop()
        self._frames_out += 1
        if self.recorder is not None:
            self.recorder.inbound(frame_in)
        relay = self.on_frame
        if relay is None:
            self._push(frame_in)
        else:
            try:
                relay(frame_in)
            except Exception:
                log.exception("rtp %s: on_frame callback failed", self.call_id)
        wanted: PCM | None = None
        det = self._detector
        if det is not None:
            if det.idle and len(frame_in) == det.block and (det is self._batch_det or self._batchable(det)):
                wanted = frame_in
            else:
                for digit, ms in det.feed(frame_in):
                    self._fire_dtmf(digit, ms, "inband")
        # --- timers
        if self._dtmf_rx_ts is not None and deadline - self._dtmf_rx_seen > _DTMF_STALE_S:
            self._finish_rx_event()
        if (
            not self._timeout_fired
            and self.inactivity_timeout > 0
            and deadline - self._last_rx >= self.inactivity_timeout
        ):
            self._timeout_fired = True
            silent = deadline - self._last_rx
            log.info("rtp %s: no RTP for %.1f s", self.call_id, silent)
            if self.on_timeout is not None:
                try:
                    self.on_timeout(silent)
                except Exception:
                    log.exception("rtp %s: on_timeout callback failed", self.call_id)
        return wanted

    def _batchable(self, det: GoertzelDetector) -> bool:
        """Whether the ticker's shared classifier decides exactly like `det` (remembered per detector)."""
        if det.config == _BATCH_DTMF_CONFIG:
            self._batch_det = det
            return True
        return False

    def _dtmf_classified(self, digit: str | None) -> None:
        """The in-band detector's verdict on the frame `_tick_in` returned."""
        det = self._detector
        if det is None or self._closed:
            return
        for d, ms in det.step(digit):
            self._fire_dtmf(d, ms, "inband")

    def _skip_ticks(self, n: int) -> None:
        """The ticker fell behind and drops n ticks: keep the RTP clock on wall time."""
        self._ts = (self._ts + n * FRAME_SAMPLES + self._fill) & 0xFFFFFFFF
        self._fill = 0
        self._ticks_skipped += n

    # --- inbound packets ----------------------------------------------------------------------------

    def _receive(self, realtime_offset: float | None) -> bool:
        """Read one datagram if there is one (called by the ticker for readable sockets)."""
        sock = self._sock
        if sock is None or self._closed:
            return False
        try:
            # into a preallocated buffer: no bytes object per datagram, and the payload is a slice of a
            # numpy view of it (the jitter buffer decodes it before the next datagram is read)
            n, anc, _flags, addr = sock.recvmsg_into(self._rx_bufs, _ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._socket_errors += 1
            log.debug("rtp %s: receive failed: %s", self.call_id, e)
            return False
        arrival: float | None = None
        if realtime_offset is not None and anc:
            level, kind, raw = anc[0]
            if level == _SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                arrival = sec + nsec * 1e-9 - realtime_offset
        self._on_datagram(self._rx_buf, addr, arrival, n)
        return True

    def _flush_socket(self) -> None:
        sock = self._sock
        for _ in range(10000):
            if sock is None:
                return
            try:
                sock.recv(_MAX_DATAGRAM)
            except OSError:
                return

    def _on_datagram(
        self, data: bytes | bytearray, addr: Address, arrival: float | None = None, n: int = -1
    ) -> None:
        """One datagram: `data[:n]` (all of `data` when n < 0)."""
        if self._closed:
            return
        if n < 0:
            n = len(data)
        if n < 12 or data[0] & 0xC0 != 0x80:
            self._malformed += 1
            return
        b1 = data[1]
        if 192 <= b1 <= 223:  # RTCP multiplexed on the RTP port (RFC 5761); not interpreted yet
            self._rtcp_received += 1
            return
        if self.latch:
            latched = self._latched
            if latched is None:
                if addr != self._sdp_addr and self._sdp_addr is not None:
                    log.info(
                        "rtp %s: latching media to %s:%d (SDP said %s)", self.call_id, *addr, self._sdp_addr
                    )
                    self._send_addr = addr
                self._latched = addr
            elif addr != latched:
                self._foreign += 1
                return
        if data[0] == 0x80:
            start, end = 12, n
        else:
            try:
                start, end = payload_offset(bytes(data[:n]))
            except PacketError:
                self._malformed += 1
                return
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        now = self._now() if arrival is None else arrival
        self._last_rx = now
        self._packets_received += 1
        self._bytes_received += n
        if ssrc == self._rx_ssrc and seq - self._rx_max == 1:
            # the usual case, in order and not wrapping: what _count_seq would do
            self._rx_max = seq
            self._rx_received += 1
        else:
            self._count_seq(seq, ssrc)
        pt = b1 & 0x7F
        if pt == self._dtmf_pt:
            self._on_event(bytes(data[start:end]), ts, now)
            return
        table = self._decode.get(pt)
        if table is None:
            if pt == COMFORT_NOISE_PT:
                self._cn_received += 1
            else:
                self._unknown_pt += 1
            return
        # RFC 3550 6.4.1 interarrival jitter, in timestamp units
        if ssrc == self._rx_ssrc and self._jit_last_arrival:
            dts = ((ts - self._jit_last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            d = (now - self._jit_last_arrival) * SAMPLE_RATE - dts
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._jit_last_arrival = now
        self._jit_last_ts = ts
        if data is self._rx_buf:
            payload = self._rx_view[start:end]
        else:
            payload = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
        status = self._jb.put(ssrc, ts, payload, table)
        if status == DUPLICATE:
            self._rx_received -= 1

    def _count_seq(self, seq: int, ssrc: int) -> None:
        """RFC 3550 A.1 style sequence accounting (extended highest sequence, cycles, restarts)."""
        if ssrc != self._rx_ssrc:
            if self._rx_ssrc is not None:
                self._rx_expected_prior += self._rx_cycles + self._rx_max - self._rx_base + 1
                self._rx_received_prior += self._rx_received
            self._rx_ssrc = ssrc
            self._rx_base = self._rx_max = seq
            self._rx_cycles = 0
            self._rx_received = 1
            self._jit_last_arrival = 0.0
            return
        udelta = (seq - self._rx_max) & 0xFFFF
        if 0 < udelta < 3000:
            if seq < self._rx_max:
                self._rx_cycles += 0x10000
            self._rx_max = seq
        elif 3000 <= udelta <= 0xFFFF - 100:
            # a jump: the sender restarted its sequence; account the old run and start a new one
            self._rx_expected_prior += self._rx_cycles + self._rx_max - self._rx_base + 1
            self._rx_received_prior += self._rx_received
            self._rx_base = self._rx_max = seq
            self._rx_cycles = 0
            self._rx_received = 0
        self._rx_received += 1

    # --- DTMF in ------------------------------------------------------------------------------------

    def _on_event(self, payload: bytes, ts: int, now: float) -> None:
        try:
            ev = decode_event(payload)
        except PacketError:
            self._malformed += 1
            return
        if ts in self._dtmf_done:
            return
        if ts != self._dtmf_rx_ts:
            if self._dtmf_rx_ts is not None:
                self._finish_rx_event()
            self._dtmf_rx_ts = ts
            self._dtmf_rx_event = ev.event
            self._dtmf_rx_dur = 0
        self._dtmf_rx_dur = max(self._dtmf_rx_dur, ev.duration)
        self._dtmf_rx_seen = now
        if ev.end:
            self._finish_rx_event()

    def _finish_rx_event(self) -> None:
        ts = self._dtmf_rx_ts
        if ts is None:
            return
        self._dtmf_rx_ts = None
        self._dtmf_done.append(ts)
        if self._dtmf_rx_event < len(EVENTS):
            self._fire_dtmf(EVENTS[self._dtmf_rx_event], self._dtmf_rx_dur * 1000 // SAMPLE_RATE, "rfc4733")

    def _fire_dtmf(self, digit: str, duration_ms: int, method: Literal["rfc4733", "inband"]) -> None:
        self._dtmf_received += 1
        self.dtmf_method = method
        log.debug("rtp %s: DTMF %s (%d ms, %s)", self.call_id, digit, duration_ms, method)
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(digit, duration_ms)
            except Exception:
                log.exception("rtp %s: on_dtmf callback failed", self.call_id)

    # --- stats --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        expected = self._rx_expected_prior
        received = self._rx_received_prior + self._rx_received
        if self._rx_ssrc is not None:
            expected += self._rx_cycles + self._rx_max - self._rx_base + 1
        lost = max(0, expected - received)
        jb = self._jb
        out = {
            "packets_sent": float(self._packets_sent),
            "bytes_sent": float(self._bytes_sent),
            "packets_received": float(self._packets_received),
            "bytes_received": float(self._bytes_received),
            "packets_expected": float(expected),
            "packets_lost": float(lost),
            "loss_pct": 100.0 * lost / expected if expected else 0.0,
            "jitter_ms": self._jitter * 1000.0 / SAMPLE_RATE,
            "late": float(jb.late),
            "dup": float(jb.duplicates),
            "malformed": float(self._malformed),
            "foreign": float(self._foreign),
            "unknown_pt": float(self._unknown_pt),
            "rtcp_received": float(self._rtcp_received),
            "cn_received": float(self._cn_received),
            "socket_errors": float(self._socket_errors),
            "send_dropped": float(self._send_dropped),
            "frames_out": float(self._frames_out),
            "frames_dropped": float(self._frames_dropped),
            "concealed_frames": float(jb.concealed),
            "underruns": float(jb.underruns),
            "jb_resets": float(jb.resets),
            "jb_target_ms": jb.target * 1000.0 / SAMPLE_RATE,
            "jb_depth_ms": jb.depth * 1000.0 / SAMPLE_RATE,
            "jb_dropped_ms": jb.dropped_samples * 1000.0 / SAMPLE_RATE,
            "send_jitter_p50_ms": self.send_jitter.percentile_ms(50),
            "send_jitter_p99_ms": self.send_jitter.percentile_ms(99),
            "send_jitter_max_ms": self.send_jitter.max_s * 1000.0,
            "ticks_skipped": float(self._ticks_skipped),
            "voice_frames_sent": float(self.playout.voice_frames_sent),
            "dtmf_sent": float(self._dtmf_sent),
            "dtmf_received": float(self._dtmf_received),
        }
        return out

    def __repr__(self) -> str:
        return f"<RtpSession {self.call_id!r} {self.local_host}:{self.local_port} -> {self._send_addr}>"


class FrameTap(Protocol):
    def inbound(self, frame: PCM | None) -> None: ...

    def outbound(self, frame: PCM | None) -> None: ...


def _bind_even(host: str, port_range: tuple[int, int] | None) -> socket.socket:
    """A non-blocking UDP socket on an even port (RFC 3550 §11), from `port_range` or ephemeral."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise ConfigError(f"RTP bind host {host!r} is not an IP address", hint="use e.g. 127.0.0.1") from None

    def try_bind(port: int) -> socket.socket | None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            if port == 0:
                raise
            return None
        sock.setblocking(False)
        if _SO_TIMESTAMPNS:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            except OSError:
                pass
        return sock

    if port_range is not None:
        lo, hi = port_range
        if not (0 < lo <= hi < 65536):
            raise ConfigError(f"RTP port range {port_range} is invalid", hint="use e.g. (20000, 30000)")
        first = lo + (lo & 1)
        candidates = list(range(first, hi + 1, 2))
        if not candidates:
            raise ConfigError(f"RTP port range {port_range} holds no even port")
        offset = random.randrange(len(candidates))
        for p in candidates[offset:] + candidates[:offset]:
            sock = try_bind(p)
            if sock is not None:
                return sock
        raise ConfigError(
            f"no free even UDP port for RTP in {lo}-{hi} on {host}",
            hint="widen the RTP port range or lower the number of concurrent calls",
        )
    try:
        for _ in range(64):
            sock = try_bind(0)
            assert sock is not None
            if sock.getsockname()[1] % 2 == 0:
                return sock
            # odd: take the even port below it if free, else try again
            even = try_bind(sock.getsockname()[1] - 1)
            sock.close()
            if even is not None:
                return even
    except OSError as e:
        raise ConfigError(f"cannot bind a UDP port for RTP on {host!r}: {e}") from e
    raise ConfigError(f"cannot bind an even UDP port for RTP on {host!r}")
