"""Joins two legs' media in our process for the hand-off to a human agent (no REFER).

Many Chinese trunks do not honour REFER, so the engine keeps both legs and relays the audio itself:

    bridge = MediaBridge(callee, agent, recorder=rec)
    await bridge.run()          # until either leg's media ends (a hang-up) or bridge.stop()

Each leg's RTP session already decodes what arrives (its own jitter buffer, one 20 ms frame per tick of
the shared media ticker) and encodes what it sends in the codec that leg negotiated, so PCMU on one side
and PCMA on the other just work. With our RTP sessions (gateway.rtp) the relay runs inside the ticker's
tick: each leg's inbound frame goes straight into the other leg's playout (`RtpSession.on_frame`) and both
legs send in the tick's late phase (`late_send`), so a frame leaves in the same tick it was decoded. The
legs' jitter buffers drop to `jitter_min_ms` (plus twice the measured jitter) while bridged: the far ends'
phones keep their own. Added delay is then the wait for the next tick (0-20 ms) plus that small target;
bench/bridge.py measures it. Other CallLeg implementations are relayed by two tasks over frames()/play()
(one tick more). If a side's playout ever holds `max_backlog_frames` (the loop stalled), the backlog is
dropped so delay never accumulates.

REFER (letting the carrier connect the two legs) is not used: many Chinese trunks do not honour it.

A `recorder` (BridgeRecorder) gets both directions frame by frame, so the call's recording continues
across the bridge as a stereo WAV (left: callee, right: agent). `listen(leg)` lets a supervisor's leg
hear both sides mixed (listen-in); nothing it says is relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE
from engine.call.playback import PlaybackHandle, Playout
from engine.ports import CallLeg, LegInfo
from gateway.rtp.session import RtpSession

log = logging.getLogger("gateway.bridge")

Side = Literal["a", "b"]


class BridgeRecorder:
    """Both directions of a bridged call, frame-aligned, written as a stereo 8 kHz WAV.

    `frame(side, pcm)` is called by the bridge for every relayed frame; the two channels are kept the same
    length (a side that fell silent is padded), so left and right stay in time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._chunks: dict[Side, list[PCM]] = {"a": [], "b": []}

    def frame(self, side: Side, pcm: PCM) -> None:
        self._chunks[side].append(pcm)

    @property
    def frames(self) -> tuple[int, int]:
        return len(self._chunks["a"]), len(self._chunks["b"])

    def stereo(self) -> np.ndarray:
        a = np.concatenate(self._chunks["a"]) if self._chunks["a"] else np.zeros(0, np.int16)
        b = np.concatenate(self._chunks["b"]) if self._chunks["b"] else np.zeros(0, np.int16)
        n = max(len(a), len(b))
        out = np.zeros((n, 2), np.int16)
        out[: len(a), 0] = a
        out[: len(b), 1] = b
        return out

    def _write(self) -> Path:
        data = self.stereo()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(self.path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(data.astype("<i2").tobytes())
        return self.path

    async def close(self) -> Path:
        """Write the WAV (off the event loop) and return its path."""
        return await asyncio.to_thread(self._write)


class TickedMedia(Protocol):
    """What the in-tick relay needs from a leg's media (gateway.rtp.session.RtpSession)."""

    on_frame: Callable[[PCM], None] | None
    late_send: bool

    def set_jitter_min_ms(self, ms: float) -> float: ...


def ticked_media(leg: CallLeg) -> TickedMedia | None:
    m = getattr(leg, "media", None)
    if m is not None and all(hasattr(m, a) for a in ("on_frame", "late_send", "set_jitter_min_ms")):
        return cast(TickedMedia, m)
    return None


class MediaBridge:
    """Relays audio a -> b and b -> a frame by frame (see module docstring). Implements the engine's
    `engine.call.transfer.Bridge`."""

    def __init__(
        self,
        a: CallLeg,
        b: CallLeg,
        *,
        recorder: BridgeRecorder | None = None,
        max_backlog_frames: int = 3,
        jitter_min_ms: float = 7.5,
        allow_in_tick: bool = True,
    ) -> None:
        self.a = a
        self.b = b
        self.recorder = recorder
        self.max_backlog_frames = max_backlog_frames
        self.jitter_min_ms = jitter_min_ms
        self.allow_in_tick = allow_in_tick
        self.in_tick = False
        self.relayed: dict[Side, int] = {"a": 0, "b": 0}
        self.dropped: dict[Side, int] = {"a": 0, "b": 0}
        self.ended_by: Side | None = None
        self._stop = asyncio.Event()
        #: supervisors listening in: each hears both sides mixed, and neither side hears them
        self.listeners: list[CallLeg] = []
        self._pending: dict[Side, PCM] = {}

    def listen(self, leg: CallLeg) -> None:
        """Let `leg` (a supervisor's answered call) hear both sides, mixed; it cannot be heard."""
        if leg not in self.listeners:
            self.listeners.append(leg)

    def unlisten(self, leg: CallLeg) -> None:
        if leg in self.listeners:
            self.listeners.remove(leg)
            leg.clear()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Relay until either side's media ends (the leg hung up) or stop() is called."""
        self.a.clear()
        self.b.clear()
        ma, mb = ticked_media(self.a), ticked_media(self.b)
        restore: list[tuple[TickedMedia, float]] = []
        if ma is not None and mb is not None and self.allow_in_tick:
            self.in_tick = True
            pa, pb = self.b.playout, self.a.playout
            ma.on_frame = lambda f: self._relay(f, pa, "a")
            mb.on_frame = lambda f: self._relay(f, pb, "b")
            for m in (ma, mb):
                m.late_send = True
                restore.append((m, m.set_jitter_min_ms(self.jitter_min_ms)))
        pumps: dict[asyncio.Future[None], Side] = {
            asyncio.ensure_future(self._pump(self.a, self.b, "a")): "a",
            asyncio.ensure_future(self._pump(self.b, self.a, "b")): "b",
        }
        stopper: asyncio.Future[None] = asyncio.ensure_future(self._wait_stop())
        try:
            done, _ = await asyncio.wait([*pumps, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                side = pumps.get(t)
                if side is not None and self.ended_by is None:
                    self.ended_by = side
                    t.result()  # a pump that crashed raises here
        finally:
            for t in [*pumps, stopper]:
                t.cancel()
            for t in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for m, jitter_ms in restore:
                m.on_frame = None
                m.late_send = False
                m.set_jitter_min_ms(jitter_ms)
            self.a.clear()
            self.b.clear()

    async def _wait_stop(self) -> None:
        await self._stop.wait()

    def _relay(self, frame: PCM, playout: Playout, side: Side) -> None:
        if len(frame) != FRAME_SAMPLES:
            return
        if playout.queued_frames >= self.max_backlog_frames:
            self.dropped[side] += playout.clear()
        playout.play(frame, label="bridge")
        self.relayed[side] += 1
        if self.recorder is not None:
            self.recorder.frame(side, frame)
        if self.listeners:
            self._mix_for_listeners(side, frame)

    def _mix_for_listeners(self, side: Side, frame: PCM) -> None:
        """Once both sides gave this tick's frame, their sum (clipped) goes to every listener."""
        other: Side = "b" if side == "a" else "a"
        pending = self._pending
        if side in pending:  # the other side skipped a frame: send what we have alone
            self._to_listeners(pending.pop(side))
        if other not in pending:
            pending[side] = frame
            return
        mixed = np.clip(pending.pop(other).astype(np.int32) + frame, -32768, 32767).astype(np.int16)
        self._to_listeners(mixed)

    def _to_listeners(self, pcm: PCM) -> None:
        for leg in self.listeners:
            playout = leg.playout
            if playout.queued_frames >= self.max_backlog_frames:
                playout.clear()
            playout.play(pcm, label="listen")

    async def _pump(self, src: CallLeg, dst: CallLeg, side: Side) -> None:
        """Relay src -> dst over the CallLeg port; in-tick mode only waits here for src's media to end
        (frames queued before the bridge are stale and dropped)."""
        playout = dst.playout
        async for frame in src.frames():
            if not self.in_tick:
                self._relay(frame, playout, side)

    def stats(self) -> dict[str, float]:
        return {
            "relayed_a_to_b": float(self.relayed["a"]),
            "relayed_b_to_a": float(self.relayed["b"]),
            "dropped_a_to_b": float(self.dropped["a"]),
            "dropped_b_to_a": float(self.dropped["b"]),
        }


class RtpLeg:
    """A media-only leg: engine.ports.CallLeg over a bare RtpSession, for RTP whose signalling is done
    elsewhere (benchmarks, tests, a media endpoint set up by another system)."""

    def __init__(self, rtp: RtpSession, target: str = "rtp") -> None:
        self.rtp = rtp
        self._info = LegInfo(call_id=rtp.call_id, target=target)

    @property
    def info(self) -> LegInfo:
        return self._info

    @property
    def playout(self) -> Playout:
        return self.rtp.playout

    @property
    def media(self) -> RtpSession:
        return self.rtp

    def frames(self) -> AsyncIterator[PCM]:
        return self.rtp.frames()

    def events(self) -> AsyncIterator[Any]:
        raise NotImplementedError("a media-only leg has no signalling events")

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle:
        return self.rtp.playout.play(pcm, label=label)

    def clear(self) -> None:
        self.rtp.playout.clear()

    async def send_dtmf(self, digits: str) -> None:
        await self.rtp.send_dtmf(digits)

    async def wait_answered(self) -> None:
        return None

    async def hangup(self, reason: str = "normal") -> None:
        await self.rtp.close()

    async def wait_ended(self) -> LegInfo:
        return self._info
