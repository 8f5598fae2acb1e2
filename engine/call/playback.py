"""Outbound audio of one call leg: one playout queue, one epoch, one handle per utterance.

The gateway's media ticker calls `Playout.next_frame()` every 20 ms. Every queued frame carries the epoch
it was queued under; `clear()` bumps the epoch, so a barge-in drops everything queued before it within one
frame and nothing stale is ever sent. A `PlaybackHandle` is the single authority for one utterance: it
knows how much of it was actually played (so the transcript can keep only what the callee heard).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.audio import FRAME_MS, FRAME_SAMPLES, PCM, frames_of, silence

_SILENCE = silence()

#: outbound frames remembered for the echo guard (engine.call.echo), silence included: 1.28 s
HISTORY_FRAMES = 64


class PlaybackHandle:
    def __init__(self, playout: Playout, frames_total: int, label: str | None) -> None:
        self._playout = playout
        self.label = label
        self.frames_total = frames_total
        self.frames_played = 0
        self.interrupted = False
        self._done = asyncio.Event()
        if frames_total == 0:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def played_s(self) -> float:
        return self.frames_played * FRAME_MS / 1000.0

    @property
    def duration_s(self) -> float:
        return self.frames_total * FRAME_MS / 1000.0

    @property
    def fraction_played(self) -> float:
        return 1.0 if self.frames_total == 0 else self.frames_played / self.frames_total

    async def wait(self) -> bool:
        """Wait until played out or interrupted. True when it played completely."""
        await self._done.wait()
        return not self.interrupted

    def interrupt(self) -> None:
        """Stop this utterance now (frames already on the wire cannot be recalled)."""
        self._playout.cancel(self)

    def _finish(self, *, interrupted: bool) -> None:
        if not self._done.is_set():
            self.interrupted = interrupted
            self._done.set()


@dataclass(slots=True)
class _Item:
    epoch: int
    frame: PCM
    handle: PlaybackHandle
    last: bool


class Playout:
    """The one outbound queue of a leg. Not thread-safe: used from the event loop only."""

    def __init__(self) -> None:
        self.epoch = 0
        self.paused = False
        self._queue: deque[_Item] = deque()
        self.frames_sent = 0
        self.voice_frames_sent = 0
        #: the last frames `next_frame()` returned (frame i of the leg is history[i - frames_sent]):
        #: the reference an echo guard compares the inbound audio with
        self.history: deque[PCM] = deque(maxlen=HISTORY_FRAMES)

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle:
        frames = frames_of(np.asarray(pcm, dtype=np.int16), FRAME_SAMPLES)
        handle = PlaybackHandle(self, len(frames), label)
        for i, f in enumerate(frames):
            self._queue.append(_Item(self.epoch, f, handle, i == len(frames) - 1))
        return handle

    @property
    def busy(self) -> bool:
        return any(item.epoch == self.epoch for item in self._queue)

    @property
    def queued_frames(self) -> int:
        return sum(1 for item in self._queue if item.epoch == self.epoch)

    def clear(self) -> int:
        """Drop everything queued (barge-in, hang-up). Returns the number of frames dropped."""
        self.epoch += 1
        dropped = 0
        while self._queue:
            item = self._queue.popleft()
            dropped += 1
            item.handle._finish(interrupted=True)
        self.paused = False
        return dropped

    def cancel(self, handle: PlaybackHandle) -> None:
        kept = deque(item for item in self._queue if item.handle is not handle)
        if len(kept) != len(self._queue):
            self._queue = kept
        handle._finish(interrupted=True)

    def pause(self) -> None:
        """Hold playout (silence goes out) without losing the queue: barge-in that may resume."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def next_frame(self) -> tuple[PCM, bool]:
        """The frame to send now and whether it is voice (False: comfort silence)."""
        self.frames_sent += 1
        if not self.paused:
            while self._queue:
                item = self._queue.popleft()
                if item.epoch != self.epoch or item.handle.done:
                    continue
                item.handle.frames_played += 1
                if item.last:
                    item.handle._finish(interrupted=False)
                self.voice_frames_sent += 1
                self.history.append(item.frame)
                return item.frame, True
        self.history.append(_SILENCE)
        return _SILENCE, False
