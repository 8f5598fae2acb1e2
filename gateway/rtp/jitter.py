"""A small adaptive jitter buffer for narrow-band G.711 audio.

Packets are placed on a sample ring by their (unwrapped) RTP timestamp, so any packet time (10/20/30 ms,
or a mix) comes out as the same fixed 20 ms frames, reordering is undone for free, and gaps in the
timestamps (DTX, lost packets) become silence or concealment. Sequence numbers are tracked by the session
for loss statistics (RFC 3550 A.1); the buffer itself follows the media clock.

Latency policy:
- On the first packet (or SSRC change, or a timestamp jump the ring cannot hold) the read position is put
  `target` samples behind the packet: playback starts after the target delay.
- target = clamp(min_target + 2 x interarrival jitter, min_target, max_latency - frame).
- If the reader catches up with the newest sample (underrun) it holds its position and conceals (this
  grows the delay by what the network needed); when a new talkspurt arrives while it is holding, it jumps
  to `target` behind it.
- If the smallest depth over the last half second exceeds target by >= 5 ms, up to one frame is dropped;
  if the depth ever exceeds max_latency it is cut back to target at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE

OK, LATE, DUPLICATE = 0, 1, 2
_WRAP = 1 << 32
_HALF = 1 << 31
_ADAPT_WINDOW = 25  # pops (0.5 s at 20 ms)


class JitterBuffer:
    def __init__(
        self,
        *,
        frame_samples: int = FRAME_SAMPLES,
        min_target_ms: float = 40.0,
        max_latency_ms: float = 200.0,
        capacity: int = 4096,
        plc: Literal["repeat", "zeros"] = "repeat",
        clock_rate: int = SAMPLE_RATE,
    ) -> None:
        if capacity & (capacity - 1):
            raise ValueError("jitter buffer capacity must be a power of two")
        self.frame = frame_samples
        self.capacity = capacity
        self._mask_bits = capacity - 1
        self.min_target = int(min_target_ms * clock_rate / 1000)
        self.max_latency = min(int(max_latency_ms * clock_rate / 1000), capacity - 2 * frame_samples)
        if self.min_target + frame_samples > self.max_latency:
            raise ValueError("jitter buffer min_target_ms must be at least one frame below max_latency_ms")
        self.plc = plc
        self.jitter_samples = 0.0  # RFC 3550 interarrival jitter, fed by the session
        self._ring = np.zeros(capacity, dtype=np.int16)
        # which ring samples hold received audio: a bytearray, because find()/slice assignment on a few
        # hundred bytes is several times cheaper than numpy reductions on tiny arrays
        self._have = bytearray(capacity)
        self._ones = b"\x01" * capacity
        self._zeros = bytes(capacity)
        self._target = self.min_target
        self.ssrc: int | None = None
        self.read_pos: int | None = None  # extended timestamp of the next sample to play
        self.high_end = 0  # extended timestamp one past the newest sample received
        self._ts_raw = 0
        self._ts_ext = 0
        self._last_real: PCM | None = None
        self._concealed_run = 0
        self._playing = False  # a frame of this stream has been played (pre-roll is not concealment)
        self._win = 0
        self._win_min = 1 << 40
        # counters
        self.packets = 0
        self.late = 0
        self.duplicates = 0
        self.resets = 0
        self.overflows = 0
        self.underruns = 0
        self.concealed = 0
        self.partial = 0
        self.dropped_samples = 0
        self.frames_out = 0

    # --- policy -------------------------------------------------------------------------------------

    @property
    def target(self) -> int:
        return self._target

    def set_jitter(self, jitter_samples: float) -> None:
        """Feed the RFC 3550 interarrival jitter estimate (timestamp units); adapts the target delay."""
        self.jitter_samples = jitter_samples
        t = self.min_target + int(2.0 * jitter_samples)
        self._target = min(t, self.max_latency - self.frame)

    def _clear(self, start: int, n: int) -> None:
        """Mark n ring samples from extended position `start` as empty."""
        if n >= self.capacity:
            self._have[:] = self._zeros
            return
        i0 = start & self._mask_bits
        first = min(n, self.capacity - i0)
        self._have[i0 : i0 + first] = self._zeros[:first]
        if first < n:
            self._have[: n - first] = self._zeros[: n - first]

    @property
    def depth(self) -> int:
        """Samples buffered ahead of the read position (0 before the first packet)."""
        return 0 if self.read_pos is None else max(0, self.high_end - self.read_pos)

    def reset(self) -> None:
        self._have[:] = self._zeros
        self.ssrc = None
        self.read_pos = None
        self._last_real = None
        self._concealed_run = 0
        self._win = 0
        self._win_min = 1 << 40

    def _sync(self, ssrc: int, ts: int) -> None:
        if self.read_pos is not None:
            self.resets += 1
        self._have[:] = self._zeros
        self.ssrc = ssrc
        self._ts_raw = ts
        self._ts_ext = ts
        self.read_pos = ts - self.target
        self.high_end = ts
        self._playing = False
        self._last_real = None
        self._win = 0
        self._win_min = 1 << 40

    def _advance_read(self, to: int) -> None:
        assert self.read_pos is not None
        n = to - self.read_pos
        if n <= 0:
            return
        self._clear(self.read_pos, n)
        self.dropped_samples += max(0, min(n, self.high_end - self.read_pos))
        self.read_pos = to

    # --- input --------------------------------------------------------------------------------------

    def put(
        self,
        ssrc: int,
        timestamp: int,
        data: npt.NDArray[np.uint8] | npt.NDArray[np.int16],
        table: npt.NDArray[np.int16] | None = None,
    ) -> int:
        """Add one packet's samples: `data` is int16 PCM (table None) or codec bytes decoded via `table`.
        Returns OK, LATE or DUPLICATE."""
        n = len(data)
        if n == 0:
            return OK
        rp = self.read_pos
        if rp is None or ssrc != self.ssrc:
            self._sync(ssrc, timestamp)
            rp = self.read_pos
            assert rp is not None
        delta = ((timestamp - self._ts_raw + _HALF) & (_WRAP - 1)) - _HALF
        ext = self._ts_ext + delta
        if delta > 0:
            self._ts_raw, self._ts_ext = timestamp, ext
        off = ext - rp
        target = self._target
        cap = self.capacity
        if off >= cap or off + n <= -cap:
            # a jump the ring cannot hold: a new stream in all but SSRC
            self._sync(ssrc, timestamp)
            ext, off = timestamp, target
        elif rp >= self.high_end and off > target + self.frame:
            # holding after an underrun / silence gap and a new talkspurt arrives: restart at target
            self._advance_read(ext - target)
            off = target
        if off + n <= 0:
            self.late += 1
            return LATE
        if off + n > cap:
            self.overflows += 1
            self._advance_read(ext + n - cap)
            off = cap - n
        have = self._have
        if off >= 0:
            i0 = ext & self._mask_bits
            if i0 + n <= cap:
                # the usual case: the whole packet lands in one piece of the ring
                if have.find(0, i0, i0 + n) < 0:
                    self.duplicates += 1
                    return DUPLICATE
                if table is None:
                    self._ring[i0 : i0 + n] = data
                else:
                    # uint8 codes index a 256-entry table: mode="clip" only skips the bounds check
                    table.take(data, out=self._ring[i0 : i0 + n], mode="clip")
                have[i0 : i0 + n] = self._ones[:n]
                if ext + n > self.high_end:
                    self.high_end = ext + n
                self.packets += 1
                return OK
        skip = -off if off < 0 else 0
        m = n - skip
        i0 = (ext + skip) & self._mask_bits
        first = min(m, cap - i0)
        if have.find(0, i0, i0 + first) < 0 and (first == m or have.find(0, 0, m - first) < 0):
            self.duplicates += 1
            return DUPLICATE
        ring = self._ring
        if table is None:
            ring[i0 : i0 + first] = data[skip : skip + first]
            if first < m:
                ring[: m - first] = data[skip + first :]
        else:
            table.take(data[skip : skip + first] if skip or first < m else data, out=ring[i0 : i0 + first])
            if first < m:
                table.take(data[skip + first :], out=ring[: m - first])
        have[i0 : i0 + first] = self._ones[:first]
        if first < m:
            have[: m - first] = self._ones[: m - first]
        if ext + n > self.high_end:
            self.high_end = ext + n
        self.packets += 1
        return OK

    # --- output -------------------------------------------------------------------------------------

    def pop(self) -> tuple[PCM, bool]:
        """The next 20 ms frame and whether it carries received audio (False: silence / concealment)."""
        self.frames_out += 1
        f = self.frame
        rp = self.read_pos
        if rp is None:
            return np.zeros(f, dtype=np.int16), False
        high = self.high_end
        depth = high - rp
        if depth <= 0:
            if self._playing:
                self.underruns += 1
            self._win = 0
            self._win_min = 1 << 40
            return self._conceal(), False
        target = self._target
        if depth > self.max_latency:
            self._advance_read(high - target)
            rp = self.read_pos
            assert rp is not None
        cap = self.capacity
        i0 = rp & self._mask_bits
        have = self._have
        real = True
        if i0 + f <= cap:
            if have.find(0, i0, i0 + f) < 0:
                frame = self._ring[i0 : i0 + f].copy()
            elif have.find(1, i0, i0 + f) >= 0:
                got = np.frombuffer(have, dtype=np.bool_, count=f, offset=i0)
                frame = np.where(got, self._ring[i0 : i0 + f], 0).astype(np.int16)
                self.partial += 1
            else:
                frame, real = self._conceal(), False
            have[i0 : i0 + f] = self._zeros[:f]  # _clear(rp, f), inlined for the one-piece case
        else:
            idx = (rp + np.arange(f)) & self._mask_bits
            got_w = np.frombuffer(have, dtype=np.bool_)[idx]
            if got_w.all():
                frame = self._ring[idx]
            elif got_w.any():
                frame = np.where(got_w, self._ring[idx], 0).astype(np.int16)
                self.partial += 1
            else:
                frame, real = self._conceal(), False
            self._clear(rp, f)
        rp += f
        self.read_pos = rp
        if real:
            self._last_real = frame
            self._concealed_run = 0
            self._playing = True
        # slow adaptation: drop excess delay that persisted over a whole window
        left = self.high_end - rp
        if left < self._win_min:
            self._win_min = left
        self._win += 1
        if self._win >= _ADAPT_WINDOW:
            excess = self._win_min - target
            if excess >= f // 4:
                self._advance_read(rp + min(excess, f))
            self._win = 0
            self._win_min = 1 << 40
        return frame, real

    def _conceal(self) -> PCM:
        if not self._playing:
            return np.zeros(self.frame, dtype=np.int16)
        self.concealed += 1
        self._concealed_run += 1
        last = self._last_real
        if self.plc == "repeat" and last is not None and self._concealed_run <= 3:
            return (last >> self._concealed_run).astype(np.int16)
        return np.zeros(self.frame, dtype=np.int16)

    def stats(self) -> dict[str, float]:
        return {
            "jb_packets": float(self.packets),
            "jb_late": float(self.late),
            "jb_duplicates": float(self.duplicates),
            "jb_resets": float(self.resets),
            "jb_overflows": float(self.overflows),
            "jb_underruns": float(self.underruns),
            "jb_concealed": float(self.concealed),
            "jb_partial": float(self.partial),
            "jb_dropped_ms": self.dropped_samples * 1000.0 / SAMPLE_RATE,
            "jb_target_ms": self.target * 1000.0 / SAMPLE_RATE,
            "jb_depth_ms": self.depth * 1000.0 / SAMPLE_RATE,
        }
