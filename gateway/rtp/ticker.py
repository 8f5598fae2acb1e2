"""The shared 20 ms media ticker: one asyncio task per (event loop, clock) drives every RTP session.

Each tick, for every started session, it sends the next outbound packet (pulled from the session's
Playout) and moves the next 20 ms inbound frame from the jitter buffer to the session's frames() queue.
Ticks are scheduled on an absolute grid (deadline += 20 ms), so there is no drift; when the loop was late
the ticker runs at most `max_burst` overdue ticks back to back and skips the rest (the sessions' RTP
clocks still advance by the skipped time, so the far end sees a gap, not a time warp).

The ticker keeps process-wide send-jitter (actual send time minus ideal) and tick-lateness histograms for
benchmarks and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time
from array import array
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.clock import Clock, RealClock

from .dtmf import GoertzelDetector

log = logging.getLogger(__name__)

PERIOD = 0.020
_EARLY_S = 0.001  # a tick may run up to this early (timer granularity)


class Histogram:
    """Fixed-bin histogram of durations in seconds (0.1 ms bins up to `max_ms`, one overflow bin)."""

    __slots__ = ("bins", "count", "max_s", "resolution_s", "total_s")

    def __init__(self, *, max_ms: float = 200.0, resolution_ms: float = 0.1) -> None:
        self.resolution_s = resolution_ms / 1000.0
        # an array, not a list: the garbage collector does not traverse it (2001 list slots per session
        # made every full collection walk ~2000 x sessions pointers: tens of ms with a few hundred calls)
        self.bins = array("q", bytes(8 * (int(max_ms / resolution_ms) + 1)))
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def record(self, seconds: float) -> None:
        if seconds < 0.0:
            seconds = 0.0
        i = int(seconds / self.resolution_s)
        bins = self.bins
        if i >= len(bins):
            i = len(bins) - 1
        bins[i] += 1
        self.count += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def merge(self, other: Histogram) -> None:
        if len(other.bins) != len(self.bins) or other.resolution_s != self.resolution_s:
            raise ValueError("histograms with different bins cannot be merged")
        for i, v in enumerate(other.bins):
            if v:
                self.bins[i] += v
        self.count += other.count
        self.total_s += other.total_s
        self.max_s = max(self.max_s, other.max_s)

    def percentile_ms(self, p: float) -> float:
        """Upper edge of the bin holding the p-th percentile, in ms (0 when empty)."""
        if self.count == 0:
            return 0.0
        rank = p / 100.0 * self.count
        acc = 0
        for i, v in enumerate(self.bins):
            acc += v
            if acc >= rank and v:
                return (i + 1) * self.resolution_s * 1000.0
        return len(self.bins) * self.resolution_s * 1000.0

    def mean_ms(self) -> float:
        return self.total_s / self.count * 1000.0 if self.count else 0.0

    def reset(self) -> None:
        self.bins = array("q", bytes(8 * len(self.bins)))
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0


class Tickable(Protocol):
    send_jitter: Histogram
    #: send after this tick's receive phase instead of first (a bridged leg relays what just arrived)
    late_send: bool

    def fileno(self) -> int: ...

    def _receive(self, realtime_offset: float | None) -> bool: ...

    def _tick_out(self, deadline: float) -> None: ...

    def _tick_in(self, deadline: float) -> npt.NDArray[np.int16] | None: ...

    def _dtmf_classified(self, digit: str | None) -> None: ...

    def _skip_ticks(self, n: int) -> None: ...


def _make_poller() -> select.epoll | select.poll:
    return select.epoll() if hasattr(select, "epoll") else select.poll()


_REAL_CLOCK = RealClock()


class MediaTicker:
    """Use `MediaTicker.get(clock)`; sessions call add()/remove()."""

    _registry: dict[tuple[int, int], MediaTicker] = {}  # noqa: RUF012 - process-wide registry by design

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, *, max_burst: int = 2) -> None:
        self._loop = loop
        self._clock = clock
        self._now: Callable[[], float] = time.monotonic if isinstance(clock, RealClock) else clock.monotonic
        self.max_burst = max_burst
        self._sessions: dict[int, Tickable] = {}
        self._snapshot: tuple[Tickable, ...] = ()
        # sockets are not on the event loop's selector: the ticker drains them once per tick (one
        # poll(0) per round) - several times cheaper than a callback per datagram
        self._poller = _make_poller()
        self._by_fd: dict[int, Tickable] = {}
        self._kernel_timestamps = isinstance(clock, RealClock)
        self.receive_rounds = 8
        self._task: asyncio.Task[None] | None = None
        self._detector = GoertzelDetector()  # classifies the in-band DTMF frames of all sessions at once
        self._retired_jitter = Histogram()  # send jitter of sessions that have left
        self.tick_lateness = Histogram()
        self.tick_work = Histogram()
        self.ticks = 0
        self.ticks_skipped = 0
        self.errors = 0

    @classmethod
    def get(cls, clock: Clock | None = None) -> MediaTicker:
        loop = asyncio.get_running_loop()
        if clock is None or type(clock) is RealClock:
            clock = _REAL_CLOCK  # every real-time session of a loop shares the one ticker
        key = (id(loop), id(clock))
        ticker = cls._registry.get(key)
        if ticker is None or ticker._loop is not loop or ticker._loop.is_closed():
            ticker = cls(loop, clock)
            cls._registry[key] = ticker
        return ticker

    @property
    def now(self) -> Callable[[], float]:
        return self._now

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def add(self, session: Tickable) -> None:
        if id(session) in self._sessions:
            return
        self._sessions[id(session)] = session
        self._snapshot = tuple(self._sessions.values())
        fd = session.fileno()
        self._by_fd[fd] = session
        self._poller.register(fd, select.POLLIN)
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run(), name="rtp-media-ticker")

    def remove(self, session: Tickable) -> None:
        if self._sessions.pop(id(session), None) is not None:
            self._snapshot = tuple(self._sessions.values())
            self._retired_jitter.merge(session.send_jitter)
            fd = session.fileno()
            if self._by_fd.get(fd) is session:
                del self._by_fd[fd]
                try:
                    self._poller.unregister(fd)
                except (KeyError, OSError, ValueError):
                    pass

    def _drain(self) -> None:
        """Read every datagram that arrived since the last tick (one per readable socket per round)."""
        offset = time.time() - time.monotonic() if self._kernel_timestamps else None
        poll = self._poller.poll
        by_fd = self._by_fd
        for _ in range(self.receive_rounds):
            events = poll(0)
            if not events:
                return
            for fd, _ev in events:
                s = by_fd.get(fd)
                if s is not None:
                    s._receive(offset)

    def _tick_all(self, deadline: float) -> None:
        """One tick for every session: all sends first (they are what has a deadline), then the receive
        drain, then every session's inbound frame, then in-band DTMF classification of all those frames
        in one vectorised call."""
        snapshot = self._snapshot
        late: list[Tickable] = []
        for s in snapshot:
            if s.late_send:
                late.append(s)
                continue
            try:
                s._tick_out(deadline)
            except Exception:
                self.errors += 1
                log.exception("rtp ticker: session send failed; session %r keeps running", s)
        try:
            self._drain()
        except Exception:
            self.errors += 1
            log.exception("rtp ticker: receive failed")
        classify: list[Tickable] = []
        frames: list[npt.NDArray[np.int16]] = []
        for s in snapshot:
            try:
                frame = s._tick_in(deadline)
            except Exception:
                self.errors += 1
                log.exception("rtp ticker: session tick failed; session %r keeps running", s)
                continue
            if frame is not None:
                classify.append(s)
                frames.append(frame)
        for s in late:
            # bridged legs (gateway.bridge): the partner's frame of this tick is in the playout now
            try:
                s._tick_out(deadline)
            except Exception:
                self.errors += 1
                log.exception("rtp ticker: session send failed; session %r keeps running", s)
        if classify:
            try:
                digits = self._detector.classify_many(np.stack(frames))
            except Exception:
                self.errors += 1
                log.exception("rtp ticker: in-band DTMF classification failed")
                return
            for s, d in zip(classify, digits, strict=True):
                try:
                    s._dtmf_classified(d)
                except Exception:
                    self.errors += 1
                    log.exception("rtp ticker: in-band DTMF failed; session %r keeps running", s)

    @property
    def send_jitter(self) -> Histogram:
        """Send-time jitter (|actual - ideal|) of every packet sent by sessions of this ticker."""
        h = Histogram()
        h.merge(self._retired_jitter)
        for s in self._snapshot:
            h.merge(s.send_jitter)
        return h

    def reset_stats(self) -> None:
        self._retired_jitter.reset()
        for s in self._snapshot:
            s.send_jitter.reset()
        self.tick_lateness.reset()
        self.tick_work.reset()
        self.ticks = 0
        self.ticks_skipped = 0

    def stats(self) -> dict[str, float]:
        jitter = self.send_jitter
        return {
            "sessions": float(len(self._sessions)),
            "ticks": float(self.ticks),
            "ticks_skipped": float(self.ticks_skipped),
            "tick_errors": float(self.errors),
            "send_jitter_p50_ms": jitter.percentile_ms(50),
            "send_jitter_p99_ms": jitter.percentile_ms(99),
            "send_jitter_max_ms": jitter.max_s * 1000.0,
            "tick_lateness_p99_ms": self.tick_lateness.percentile_ms(99),
            "tick_work_p99_ms": self.tick_work.percentile_ms(99),
            "tick_work_mean_ms": self.tick_work.mean_ms(),
        }

    async def _run(self) -> None:
        now = self._now
        sleep = self._clock.sleep
        deadline = now()
        try:
            while self._sessions:
                t = now()
                late = t - deadline
                if late >= PERIOD * self.max_burst:
                    # too far behind: skip whole ticks, keep the last `max_burst` to run now
                    skip = int(late / PERIOD) - self.max_burst + 1
                    if skip > 0:
                        for s in self._snapshot:
                            s._skip_ticks(skip)
                        deadline += skip * PERIOD
                        self.ticks_skipped += skip
                runs = 0
                while runs < self.max_burst and deadline <= t + _EARLY_S:
                    self.tick_lateness.record(abs(t - deadline))
                    self._tick_all(deadline)
                    self.ticks += 1
                    deadline += PERIOD
                    runs += 1
                    t2 = now()
                    self.tick_work.record(t2 - t)
                    t = t2
                # epoll rounds timeouts up to whole ms: aim half a ms early so wake-ups straddle the deadline
                delay = deadline - now() - _EARLY_S / 2
                await sleep(delay if delay > 0 else 0)
        finally:
            self._task = None
