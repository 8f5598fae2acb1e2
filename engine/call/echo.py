"""Echo guard: keeps our own prompt, echoed back by the line, from looking like the callee speaking.

A telephone line often returns what we send, attenuated (hybrid echo, an echoing softphone, SIPp's
rtp_echo) and delayed by the network and both jitter buffers. Without a guard the endpointer hears our
prompt coming back, "detects" speech and the robot barges in on itself.

Per inbound frame the guard:

1. Keeps the recent outbound frames (the reference, from `Playout.history`) next to the recent inbound
   audio, both indexed by the 20 ms tick, so the alignment holds even when the reader lags behind.
2. While our prompt could still be echoing and the inbound frame is not silent, it finds the echo path
   by normalised cross-correlation (one FFT over a `window_ms` inbound window against `max_delay_ms` of
   reference): the lag of the peak is the delay, the least-squares ratio at that lag the gain. A peak
   over `lock_corr` locks the estimate; it is re-checked every `recheck_frames` frames.
3. Subtracts the estimated echo (gain x reference delayed) and decides, ERLE-style, whether what is left
   is the callee (double talk) or residual echo: the residual counts as the callee only when it is more
   than `margin_db` above the echo the canceller is expected to leave (echo level - ERLE). The ERLE is
   learnt on frames that are clearly echo only (frame correlation >= 0.9): it rises fast, falls slowly.
   Residual echo is attenuated by `suppress_db`, so the endpointer sees near silence.
4. Before a residual no louder than the line's echo can be passes as the callee, it is correlated with
   our prompt within 2 frames of the locked delay: a jitter buffer that moved the echo path between
   two checks leaves our own prompt there (the path is re-estimated on the next frame). This costs
   a quiet callee under a loud (-6 dB) echo up to ~0.3 s of barge-in latency; callee speech louder
   than the echo is never checked.

The cost is a few 160-sample dot products per frame, and one 16 k-point FFT per estimate (only while our
prompt is echoing and the line is not silent). Callee speech over our prompt is not correlated with it,
so it survives the subtraction and still barges in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_MS, FRAME_SAMPLES, PCM, rms_dbfs
from engine.call.playback import Playout

_F = npt.NDArray[np.float64]

#: the echo path is modelled as an FIR of _TAPS samples starting _PRE_TAPS before the bulk delay
_TAPS = 24
_PRE_TAPS = 4
#: a lock this good models the echo precisely: the residual alone decides double talk
_SURE_CORR = 0.95
#: a residual this correlated with our prompt at a nearby delay is echo that drifted, not the callee
_DRIFT_CORR = 0.6
#: the delay range searched either side of the lock for that (frames)
_DRIFT_SPAN = 2


@dataclass(frozen=True)
class EchoConfig:
    #: the longest echo delay searched (line round trip plus both jitter buffers)
    max_delay_ms: int = 500
    #: inbound audio correlated against the reference per estimate
    window_ms: int = 320
    #: normalised cross-correlation peak that identifies our own prompt coming back
    lock_corr: float = 0.5
    #: frames between re-estimates while locked
    recheck_frames: int = 5
    #: the residual must exceed the expected residual echo by this much to count as the callee
    margin_db: float = 6.0
    #: when the fine estimate is shaky, a frame within this much of the loudest echo the line could
    #: return (reference level + measured echo gain) is taken for echo
    bound_margin_db: float = 1.0
    #: ERLE assumed before any has been measured (and its bounds)
    initial_erle_db: float = 12.0
    max_erle_db: float = 30.0
    #: attenuation applied to frames judged to be residual echo
    suppress_db: float = 30.0
    #: outbound quieter than this is not playing (no echo to expect)
    min_ref_dbfs: float = -55.0
    #: inbound quieter than this is left alone (nothing to confuse the endpointer with)
    min_in_dbfs: float = -60.0


@dataclass
class EchoStats:
    frames: int = 0
    estimates: int = 0
    suppressed: int = 0
    passed_double_talk: int = 0
    fallback: int = 0
    locks: int = 0
    drifts: int = 0


class EchoGuard:
    """One per call. Call `sync(playout)` (or `add_reference`) then `process(frame)` per inbound frame."""

    def __init__(self, config: EchoConfig | None = None) -> None:
        cfg = self.cfg = config or EchoConfig()
        self._lag_f = -(-cfg.max_delay_ms // FRAME_MS)  # frames of lag searched
        self._win_f = max(1, cfg.window_ms // FRAME_MS)
        self._ring_f = self._lag_f + self._win_f + 4
        self._ref = np.zeros(self._ring_f * FRAME_SAMPLES, np.float64)
        self._ref_lvl = np.full(self._ring_f, -120.0)
        self._in = np.zeros(self._ring_f * FRAME_SAMPLES, np.float64)
        self._ref_newest = -1  # absolute index of the newest outbound frame stored
        self._n = -1  # absolute index of the newest inbound frame
        self._base: int | None = None  # inbound frame n is aligned with outbound frame base + n
        self.delay: int | None = None  # echo delay in samples, relative to the alignment
        self.gain = 0.0
        #: the line's echo gain (dB) from the last confident lock; kept when the fine estimate is lost
        self.echo_db: float | None = None
        self._taps: _F = np.zeros(_TAPS)
        self.corr = 0.0
        self.erle_db = cfg.initial_erle_db
        self._since_check = 0
        self._miss = 0  # consecutive loud frames the locked echo path did not explain
        self.stats = EchoStats()
        self._suppress = 10.0 ** (-cfg.suppress_db / 20.0)
        n_fft = 1
        while n_fft < (self._win_f * 2 + self._lag_f) * FRAME_SAMPLES:
            n_fft *= 2
        self._n_fft = n_fft

    # --- reference -----------------------------------------------------------------------------------

    def add_reference(self, index: int, frame: PCM) -> None:
        """Outbound frame number `index` (consecutive; a gap is filled with silence)."""
        if index <= self._ref_newest:
            return
        for i in range(max(self._ref_newest + 1, index - self._ring_f + 1), index):
            self._put_ref(i, None)
        self._put_ref(index, frame)
        self._ref_newest = index

    def _put_ref(self, index: int, frame: PCM | None) -> None:
        slot = index % self._ring_f
        s = slot * FRAME_SAMPLES
        if frame is None or not frame.any():
            self._ref[s : s + FRAME_SAMPLES] = 0.0
            self._ref_lvl[slot] = -120.0
        else:
            self._ref[s : s + FRAME_SAMPLES] = frame
            self._ref_lvl[slot] = rms_dbfs(frame)

    def sync(self, playout: Playout) -> None:
        """Copy the frames the playout sent since the last call (its history) into the reference."""
        sent = playout.frames_sent
        hist = playout.history
        first = sent - len(hist)
        start = max(first, self._ref_newest + 1, sent - self._ring_f)
        for i in range(start, sent):
            self.add_reference(i, hist[i - first])
        if sent - 1 > self._ref_newest:  # nothing in history (never played): keep the index moving
            self.add_reference(sent - 1, np.zeros(0, np.int16))

    # --- inbound -------------------------------------------------------------------------------------

    def _ref_samples(self, start: int, length: int) -> _F:
        """Reference samples at absolute sample positions start .. start+length (silence outside)."""
        idx = np.arange(start, start + length)
        out = self._ref[idx % len(self._ref)].copy()
        oldest = (self._ref_newest - self._ring_f + 1) * FRAME_SAMPLES
        newest = (self._ref_newest + 1) * FRAME_SAMPLES
        out[(idx < oldest) | (idx >= newest)] = 0.0
        return out

    def _in_window(self, frames: int) -> _F:
        n = self._n
        first = max(0, n - frames + 1)
        idx = np.arange(first * FRAME_SAMPLES, (n + 1) * FRAME_SAMPLES)
        return self._in[idx % len(self._in)]

    def _estimate(self, m: int, frames: int) -> None:
        """Find the echo path: the lag (0..max_delay) where the last `frames` inbound frames best match
        the reference."""
        self.stats.estimates += 1
        x = self._in_window(frames)
        w = len(x)
        lag = self._lag_f * FRAME_SAMPLES
        end = (m + 1) * FRAME_SAMPLES
        y = self._ref_samples(end - w - lag, w + lag)
        ex = float(x @ x)
        if ex <= 0.0:
            return
        nf = self._n_fft
        c = np.fft.irfft(np.fft.rfft(y, nf) * np.conj(np.fft.rfft(x, nf)), nf)[: lag + 1]
        ey = _window_energy(y, w)  # energy of y[k : k + w], k = 0 .. lag
        ok = ey > 1e-6 * ex
        if not ok.any():
            return
        ncc = np.where(ok, c / np.sqrt(ex * np.maximum(ey, 1e-12)), 0.0)
        k = int(np.argmax(ncc))
        peak = float(ncc[k])
        # a short window finds chance peaks more easily: ask more of it
        need = self.cfg.lock_corr if frames >= self._win_f else max(self.cfg.lock_corr, 0.7)
        # keep a good lock through double talk (the callee lowers the peak); replace it when it fails
        moved = self.delay is None or abs((lag - k) - self.delay) > 2
        better = peak >= _SURE_CORR or (moved and (self.delay is None or self._miss > 0 or peak > self.corr))
        if peak >= need and better:
            if self.delay is None:
                self.stats.locks += 1
            self.delay = lag - k
            self.gain = float(c[k] / ey[k])
            self.corr = peak
            self._fit_taps(x, y, k)
            norm = float(np.sqrt(self._taps @ self._taps))
            if peak >= _SURE_CORR and norm > 0:
                self.echo_db = 20.0 * math.log10(norm)

    def _fit_taps(self, x: _F, y: _F, k: int) -> None:
        """Least-squares FIR around the bulk delay: a line hybrid smears the echo over a few ms."""
        pre, taps = _PRE_TAPS, _TAPS
        w = len(x)
        # column j: the reference delayed by (delay - pre + j) samples, aligned with x
        cols = []
        for j in range(taps):
            off = k + pre - j
            col = np.zeros(w)
            lo, hi = max(0, -off), min(w, len(y) - off)
            if hi > lo:
                col[lo:hi] = y[lo + off : hi + off]
            cols.append(col)
        a = np.stack(cols, axis=1)
        ata = a.T @ a
        ata += np.eye(taps) * (1e-3 * float(np.trace(ata)) / taps + 1e-9)
        self._taps = np.asarray(np.linalg.solve(ata, a.T @ x), dtype=np.float64)

    def _echo(self, m: int) -> _F:
        """The echo expected in inbound frame m (the reference filtered by the fitted taps)."""
        assert self.delay is not None
        start = m * FRAME_SAMPLES - self.delay + _PRE_TAPS - (_TAPS - 1)
        seg = self._ref_samples(start, FRAME_SAMPLES + _TAPS - 1)
        out: _F = np.convolve(seg, self._taps, mode="valid")
        return out

    def process(self, frame: PCM) -> PCM:
        """The inbound frame with our echo removed; frames that are only echo come back near silent."""
        cfg = self.cfg
        self.stats.frames += 1
        self._n += 1
        n = self._n
        s = (n % self._ring_f) * FRAME_SAMPLES
        x = frame.astype(np.float64)
        self._in[s : s + FRAME_SAMPLES] = x
        if self._base is None or self._base + n > self._ref_newest:
            # first frame, or the reader caught up after a backlog: realign (the lag search absorbs it)
            if self._base is not None:
                self.delay = None
            self._base = self._ref_newest - n
        m = self._base + n
        lo = m - self._lag_f
        recent = [
            self._ref_lvl[i % self._ring_f]
            for i in range(max(lo, self._ref_newest - self._ring_f + 1), m + 1)
        ]
        if not recent or max(recent) < cfg.min_ref_dbfs:
            return frame  # nothing of ours could be echoing now
        lvl_in = rms_dbfs(frame)
        if lvl_in < cfg.min_in_dbfs:
            return frame
        self._since_check += 1
        if self._miss > 0:
            # the lock stopped explaining the line (a jitter buffer moved the delay, or the callee talks):
            # look again at once, on the frames since then only, so the old path does not blur the peak
            self._estimate(m, max(5, min(self._win_f, self._miss + 2)))
        elif self.delay is None or self._since_check >= cfg.recheck_frames:
            self._since_check = 0
            self._estimate(m, self._win_f)
        # Geigel-style bound for when the fine estimate is shaky (the delay just moved, a weak lock):
        # the loudest echo our recent prompt can produce on this line, from the echo gain last measured
        bound = max(recent) + self.echo_db + cfg.bound_margin_db if self.echo_db is not None else None
        if self.delay is None:
            return self._fallback(frame, lvl_in, bound)  # no current lock
        if bound is not None and self.echo_db is not None:  # near the locked delay (a few frames' drift)
            c = m - self.delay // FRAME_SAMPLES
            near = [self._ref_lvl[i % self._ring_f] for i in range(c - 2, c + 2) if i <= self._ref_newest]
            bound = (max(near) if near else -120.0) + self.echo_db + cfg.bound_margin_db
        e = self._echo(m)
        r = x - e
        ee, rr = float(e @ e), float(r @ r)
        lvl_e = _db(ee)
        lvl_r = _db(rr)
        xe = float(x @ e)
        rho = xe / math.sqrt(float(x @ x) * ee) if ee > 0 else 0.0
        if rho >= 0.9 and lvl_e > cfg.min_in_dbfs:  # echo alone: learn what the canceller achieves
            erle = min(cfg.max_erle_db, max(0.0, lvl_in - lvl_r))
            rate = 0.3 if erle > self.erle_db else 0.02
            self.erle_db += rate * (erle - self.erle_db)
        if rho < 0.3 and lvl_r >= lvl_in - 3.0:  # the lock does not explain this frame
            self._miss += 1
            return self._fallback(frame, lvl_in, bound)
        self._miss = 0
        if lvl_r > lvl_e - self.erle_db + cfg.margin_db and (
            self.corr >= _SURE_CORR or bound is None or lvl_r > bound
        ):
            # no louder than our echo can be, and what is left is our prompt a few ms off: the path
            # drifted (re-lock on the next frame); a callee louder than the echo is never checked
            if bound is not None and lvl_in <= bound and self._drifted(m, r):
                self._miss = 1
                self.stats.drifts += 1
                return self._fallback(frame, lvl_in, bound)
            self.stats.passed_double_talk += 1
            return _pcm(r)
        self.stats.suppressed += 1
        return _pcm(r * self._suppress)

    def _drifted(self, m: int, r: _F) -> bool:
        """Whether what the canceller left of this frame is our own prompt at a delay up to
        `_DRIFT_SPAN` frames off the lock (a jitter buffer moved the echo path between checks)."""
        assert self.delay is not None
        span = _DRIFT_SPAN * FRAME_SAMPLES
        y = self._ref_samples(m * FRAME_SAMPLES - self.delay - span, FRAME_SAMPLES + 2 * span)
        er = float(r @ r)
        if er <= 0.0:
            return False
        c = np.correlate(y, r, mode="valid")
        ncc = c / np.sqrt(er * np.maximum(_window_energy(y, FRAME_SAMPLES), 1e-12))
        return bool(np.max(ncc) >= _DRIFT_CORR)

    def _fallback(self, frame: PCM, lvl_in: float, bound: float | None) -> PCM:
        """No usable echo estimate for this frame: once this line has shown an echo, a frame no louder
        than that echo could be is taken for it (the callee, if louder, still passes)."""
        if bound is not None and lvl_in <= bound:
            self.stats.suppressed += 1
            self.stats.fallback += 1
            return _pcm(frame.astype(np.float64) * self._suppress)
        return frame


def _window_energy(y: _F, w: int) -> _F:
    """Energy of every `w`-sample window of `y`: element k is sum(y[k : k + w] ** 2)."""
    cs = np.concatenate(([0.0], np.cumsum(y * y)))
    out: _F = cs[w:] - cs[: len(cs) - w]
    return out


def _db(energy: float) -> float:
    if energy <= 0.0:
        return -120.0
    return 10.0 * math.log10(energy / FRAME_SAMPLES) - 20.0 * math.log10(32768.0)


def _pcm(x: _F) -> PCM:
    out: PCM = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return out
