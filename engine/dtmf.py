"""In-band DTMF detection: a Goertzel detector for 8 kHz frames (pure numpy).

It evaluates the eight DTMF frequencies on each 20 ms frame (an exact-frequency DFT, i.e. Goertzel,
vectorised as one matrix product), checks that the strongest row and column tones dominate the frame's
energy with acceptable twist, and reports a digit after two consecutive frames (40 ms, the ITU minimum), its
duration when it ends. The gateway runs it on the media of carriers that pass DTMF as audio
(gateway.rtp.dtmf); the beep detector (engine.call.beep) uses `classify` to tell a DTMF frame from a beep.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")


def _basis(n: int, sample_rate: int) -> npt.NDArray[np.float64]:
    t = np.arange(n) / sample_rate
    freqs = np.array(ROW_FREQS + COL_FREQS)
    ang = 2 * np.pi * freqs[:, None] * t[None, :]
    return np.vstack([np.cos(ang), np.sin(ang)])  # (16, n)


class GoertzelDetector:
    """Streaming in-band DTMF detector for 8 kHz int16 frames (any length; analysed per 160 samples)."""

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        block: int = FRAME_SAMPLES,
        min_level_dbfs: float = -36.0,
        min_tone_ratio: float = 0.55,
        max_twist_db: float = 8.0,
        min_frames: int = 2,
    ) -> None:
        self.sample_rate = sample_rate
        self.block = block
        self._basis = _basis(block, sample_rate)
        # energy of one full-scale sine over the block, to turn sum(x^2) into a level
        self._min_energy = block * (32768.0**2) / 2 * 10 ** (min_level_dbfs / 10.0)
        self.min_tone_ratio = min_tone_ratio
        self.max_twist = 10 ** (max_twist_db / 10.0)
        self.min_frames = min_frames
        self._pending = np.zeros(0, dtype=np.int16)
        self._current: str | None = None
        self._run = 0
        self._reported: str | None = None
        self._quiet = 0

    def classify(self, block: PCM) -> str | None:
        """The DTMF digit present in one block, or None."""
        x = np.asarray(block, dtype=np.float64)
        energy = float(np.dot(x, x))
        if energy < self._min_energy:
            return None
        proj = self._basis @ x
        power = proj[:8] ** 2 + proj[8:] ** 2  # |X(f)|^2 per DTMF frequency
        rel = power * (2.0 / (self.block * energy))  # 1.0 for a block that is one pure sine
        r = int(np.argmax(rel[:4]))
        c = int(np.argmax(rel[4:]))
        pr, pc = rel[r], rel[4 + c]
        if pr + pc < self.min_tone_ratio:
            return None
        if pr > pc * self.max_twist or pc > pr * self.max_twist:
            return None
        # the winners must clearly dominate their groups (rejects chords and broadband sound)
        others_r = np.delete(rel[:4], r).max()
        others_c = np.delete(rel[4:], c).max()
        if others_r * 4.0 > pr or others_c * 4.0 > pc:
            return None
        return KEYPAD[r][c]

    @property
    def config(self) -> tuple[int, int, float, float, float]:
        """Detectors with equal config classify identically (and can share one `classify_many` call)."""
        return (self.block, self.sample_rate, self._min_energy, self.min_tone_ratio, self.max_twist)

    @property
    def idle(self) -> bool:
        """No partial block is pending: a whole block can be classified on its own and `step`ped."""
        return len(self._pending) == 0

    def classify_many(self, blocks: npt.NDArray[np.int16]) -> list[str | None]:
        """`classify` for each row of a (n, block) array, in one vectorised pass (many sessions per tick).

        Same decision rules as `classify`; the sums may round differently in the last bit (matrix product
        vs vector product), which only matters for a block sitting exactly on a threshold."""
        n = blocks.shape[0]
        out: list[str | None] = [None] * n
        if n == 0:
            return out
        x = blocks.astype(np.float64)
        energy = np.einsum("ij,ij->i", x, x)
        loud = np.flatnonzero(energy >= self._min_energy)
        if len(loud) == 0:
            return out
        if len(loud) < n:
            x, energy = x[loud], energy[loud]
        proj = x @ self._basis.T  # (m, 16)
        power = proj[:, :8] ** 2 + proj[:, 8:] ** 2
        rel = power * (2.0 / (self.block * energy))[:, None]
        rows, cols = rel[:, :4], rel[:, 4:]
        idx = np.arange(len(rel))
        r = rows.argmax(axis=1)
        c = cols.argmax(axis=1)
        pr, pc = rows[idx, r], cols[idx, c]
        # the largest of the other three in each group: the second value of the sorted group
        others_r = np.sort(rows, axis=1)[:, -2]
        others_c = np.sort(cols, axis=1)[:, -2]
        ok = (
            (pr + pc >= self.min_tone_ratio)
            & (pr <= pc * self.max_twist)
            & (pc <= pr * self.max_twist)
            & (others_r * 4.0 <= pr)
            & (others_c * 4.0 <= pc)
        )
        for k in np.flatnonzero(ok).tolist():
            out[int(loud[k])] = KEYPAD[int(r[k])][int(c[k])]
        return out

    def step(self, digit: str | None) -> list[tuple[str, int]]:
        """Advance by one classified block (from `classify_many`); digits that ended, like `feed`."""
        if digit is None and self._current is None:
            return []  # no tone before or now: _step would change nothing
        out: list[tuple[str, int]] = []
        self._step(digit, out)
        return out

    def feed(self, pcm: PCM) -> list[tuple[str, int]]:
        """Feed audio; returns digits that ended in it as (digit, duration_ms)."""
        data = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)]) if len(self._pending) else pcm
        out: list[tuple[str, int]] = []
        b = self.block
        n_blocks = len(data) // b
        for i in range(n_blocks):
            d = self.classify(data[i * b : (i + 1) * b])
            self._step(d, out)
        self._pending = np.array(data[n_blocks * b :], dtype=np.int16)
        return out

    def flush(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        self._step(None, out)
        self._step(None, out)
        return out

    def _step(self, d: str | None, out: list[tuple[str, int]]) -> None:
        ms = self.block * 1000 // self.sample_rate
        if d is not None and d == self._current:
            self._run += 1
            self._quiet = 0
            return
        if d is None and self._current is not None and self._quiet == 0 and self._run >= self.min_frames:
            # tolerate one dropout frame inside a reported tone
            self._quiet = 1
            return
        if self._current is not None and self._run >= self.min_frames:
            out.append((self._current, self._run * ms))
        self._current = d
        self._run = 1 if d is not None else 0
        self._quiet = 0
