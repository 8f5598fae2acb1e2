"""SipCallLeg: one SIP call plus its RTP media, as the engine's `CallLeg`.

The SIP side (gateway.sip.call.SipCall) tells the leg what happened; the leg drives the RTP session
(remote address on 183/200, sending silence at once on answer so SBCs latch) and turns it all into one
ordered stream of leg events. RTP inactivity ends the call with BYE and disposition media_timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal, Protocol

from engine.audio import PCM
from engine.call.playback import PlaybackHandle, Playout
from engine.clock import Clock, RealClock
from engine.dispositions import Disposition
from engine.events import (
    Answered,
    DtmfReceived,
    EarlyMedia,
    Ended,
    LegEvent,
    MediaTimeout,
    Ringing,
)
from engine.ports import LegInfo
from gateway.recording import CallRecorder
from gateway.rtp.session import FrameTap
from gateway.sip.call import CallLog, SipCall
from gateway.sip.sdp import NegotiatedMedia

log = logging.getLogger("gateway.leg")


class MediaSession(Protocol):
    """The RTP session contract (gateway.rtp.session.RtpSession)."""

    local_host: str
    local_port: int
    playout: Playout
    on_dtmf: Callable[[str, int], None] | None
    on_timeout: Callable[[float], None] | None
    recorder: FrameTap | None
    #: how the digit being reported arrived (set before on_dtmf is called)
    dtmf_method: Literal["rfc4733", "inband"]

    def set_remote(
        self,
        host: str,
        port: int,
        *,
        codec: Literal["PCMU", "PCMA"],
        payload_type: int,
        ptime_ms: int = 20,
        dtmf_payload_type: int | None = 101,
    ) -> None: ...

    def start(self) -> None: ...

    def frames(self) -> AsyncIterator[PCM]: ...

    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None: ...

    def stats(self) -> dict[str, float]: ...

    async def close(self) -> None: ...


class SipCallLeg:
    """engine.ports.CallLeg over our SIP UA and RTP. Incoming legs also have ring/answer/reject."""

    def __init__(self, call: SipCall, media: MediaSession, *, clock: Clock | None = None) -> None:
        self._call = call
        self._media = media
        self._clock = clock or RealClock()
        self._events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._started = False
        self._closed = False
        self._early_emitted = False
        self._ringing_emitted = False
        self._close_task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self.log = CallLog(log, {"call_id": call.call_id})
        media.on_dtmf = self._on_rtp_dtmf
        media.on_timeout = self._on_rtp_timeout
        call.listener = self

    # ------------------------------------------------------------------ CallLeg
    @property
    def info(self) -> LegInfo:
        return self._call.info

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def direction(self) -> Literal["outbound", "inbound"]:
        return "outbound" if self._call.role == "uac" else "inbound"

    @property
    def playout(self) -> Playout:
        return self._media.playout

    @property
    def media(self) -> MediaSession:
        return self._media

    async def wait_progress(self) -> None:
        """Return at the first sign of life from the far end past 100 Trying (180/183/200) or at the end of
        the attempt: the point after which a trunk failover is no longer possible."""
        await self._progress.wait()

    async def events(self) -> AsyncIterator[LegEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, Ended):
                return

    def frames(self) -> AsyncIterator[PCM]:
        return self._media.frames()

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle:
        return self._media.playout.play(pcm, label=label)

    def clear(self) -> None:
        self._media.playout.clear()

    async def send_dtmf(self, digits: str) -> None:
        await self._media.send_dtmf(digits)

    def record(self) -> CallRecorder:
        """Start recording both directions (left the callee, right what we send) from this tick on."""
        rec = CallRecorder()
        self._media.recorder = rec
        return rec

    async def wait_answered(self) -> None:
        await self._call.wait_answered()

    async def hangup(self, reason: str = "normal") -> None:
        await self._call.hangup(reason)
        await self.wait_ended()

    async def wait_ended(self) -> LegInfo:
        info = await self._call.wait_ended()
        if self._close_task is not None:
            await asyncio.shield(self._close_task)
        return info

    # ------------------------------------------------------------------ incoming calls
    def ring(self) -> None:
        """Send 180 Ringing (incoming calls)."""
        self._call.ring()

    async def answer(self) -> None:
        """Answer an incoming call: 180, 200 OK with our SDP; returns when the caller's ACK arrived."""
        await self._call.answer()

    async def reject(self, code: int = 486, reason: str | None = None) -> None:
        """Refuse an incoming call with a final response (486 Busy Here by default)."""
        self._call.reject(code, reason=reason)
        await self.wait_ended()

    # ------------------------------------------------------------------ CallListener
    def local_media(self) -> tuple[str, int]:
        return self._media.local_host, self._media.local_port

    def _now(self) -> float:
        return self._clock.monotonic()

    def _apply(self, m: NegotiatedMedia) -> bool:
        try:
            self._media.set_remote(
                m.host,
                m.port,
                codec=m.codec,
                payload_type=m.payload_type,
                ptime_ms=m.ptime_ms,
                dtmf_payload_type=m.dtmf_payload_type,
            )
        except Exception as e:  # e.g. a hostname or a bad payload type in the remote SDP
            self.log.warning("cannot use remote media %s:%d: %s; hanging up", m.host, m.port, e)
            self.info.reason = f"unusable remote media: {e}"
            self._call.terminate(Disposition.FAILED, "system", "unusable remote media")
            return False
        return True

    def _start_media(self) -> None:
        if not self._started:
            self._started = True
            self._media.start()

    def on_ringing(self, code: int) -> None:
        self._progress.set()
        if not self._ringing_emitted:
            self._ringing_emitted = True
            self._events.put_nowait(Ringing(call_id=self.call_id, at=self._now(), sip_code=code))

    def on_early_media(self, media: NegotiatedMedia, code: int) -> None:
        self._progress.set()
        if not self._apply(media):
            return
        self._start_media()
        if not self._early_emitted:
            self._early_emitted = True
            self._events.put_nowait(EarlyMedia(call_id=self.call_id, at=self._now(), sip_code=code))

    def on_answered(self, media: NegotiatedMedia) -> None:
        self._progress.set()
        if not self._apply(media):
            return
        self._start_media()
        self._events.put_nowait(Answered(call_id=self.call_id, at=self._now()))

    def on_media_changed(self, media: NegotiatedMedia) -> None:
        if self._apply(media):
            self._start_media()  # 183 without a later SDP, or an offer in the ACK

    def on_dtmf(self, digit: str, duration_ms: int | None) -> None:
        self._events.put_nowait(
            DtmfReceived(
                call_id=self.call_id, at=self._now(), digit=digit, method="info", duration_ms=duration_ms
            )
        )

    def on_ended(self) -> None:
        self._progress.set()
        info = self.info
        info.stats = dict(self._safe_stats())
        self._events.put_nowait(
            Ended(
                call_id=self.call_id,
                at=self._now(),
                disposition=info.disposition or Disposition.FAILED,
                by=info.hangup_by or "system",
                sip_code=info.sip_code,
                reason=info.reason,
                q850_cause=info.q850_cause,
            )
        )
        self._close_task = asyncio.ensure_future(self._close_media())

    def _safe_stats(self) -> dict[str, float]:
        try:
            return self._media.stats()
        except Exception:
            return {}

    async def _close_media(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._media.close()
        except Exception:
            self.log.exception("closing RTP failed")

    # ------------------------------------------------------------------ RTP callbacks
    def _on_rtp_dtmf(self, digit: str, duration_ms: int) -> None:
        # the RTP session sets dtmf_method before calling: telephone-event, or tones found in the audio
        method = self.media.dtmf_method
        self._events.put_nowait(
            DtmfReceived(
                call_id=self.call_id, at=self._now(), digit=digit, method=method, duration_ms=duration_ms
            )
        )

    def _on_rtp_timeout(self, silent_s: float) -> None:
        if self._call.ended:
            return
        self.log.warning("no RTP for %.1f s: hanging up (media_timeout)", silent_s)
        self._events.put_nowait(MediaTimeout(call_id=self.call_id, at=self._now(), silent_s=silent_s))
        self._call.terminate(Disposition.MEDIA_TIMEOUT, "system", "media_timeout")
