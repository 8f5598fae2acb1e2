"""Sustained single-tone detector: the voicemail beep (提示音), told apart from ringback, DTMF and music.

Each 20 ms frame is analysed together with the one before it (a 40 ms Hann window, so the main lobe is
±50 Hz and a neighbouring speech harmonic 100 Hz away falls outside it), zero-padded to 1024 points for a
finer peak frequency. Per frame:

* `ratio`: the share of the frame's energy within ±40 Hz of the spectral peak. A pure sine puts ~100 % of
  its energy there; white noise puts 80/4000 = 2 % of its energy there, so a sine at SNR s (linear) gives
  (s + 0.02) / (s + 1): 0.91 at 10 dB, 0.80 at 6 dB. `min_ratio` 0.75 keeps tones down to ~5 dB SNR.
  Voiced speech spreads its energy over several harmonics and moves: on the corpus its in-band ratio stays
  above 0.7 for at most 4 consecutive frames, well short of the 6 a 150 ms beep gives.
* a second, non-harmonic peak holding `two_tone_share` of the energy marks a dual tone (DTMF, US
  ringback): the frame is not a single tone. DTMF at the largest twist the in-band DTMF detector
  (engine.dtmf.GoertzelDetector, the one the gateway runs) accepts (8 dB) still puts 14 % in its weaker
  tone; harmonics of a clipped beep (k·f, folded at 4 kHz) are not counted as a second tone. A frame that
  detector classifies as a digit is never tonal either.

Consecutive tonal frames whose peak stays within `max_drift_hz` of the run's mean form a tone. When it
ends it is classified:

* `ringback`: 450 Hz ± 30 (Chinese ringback, 1 s on / 4 s off; also 440/480 Hz) lasting >= 0.7 s;
* `beep`: 400-2000 Hz, 0.15-1.5 s, flat level (a beep is not a decaying note) and followed by a level
  drop of `min_drop_db` (a voicemail beep is followed by the silence of the recording; a note of a melody
  is followed by the next note);
* `tone`: anything else tonal of at least 0.15 s (reported, never acted on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_MS, FRAME_SAMPLES, PCM, SAMPLE_RATE, rms_dbfs
from engine.dtmf import GoertzelDetector

_NFFT = 1024
_WIN = np.hanning(2 * FRAME_SAMPLES)
_FREQS = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLE_RATE)
_BIN_HZ = SAMPLE_RATE / _NFFT


@dataclass(frozen=True)
class ToneConfig:
    min_hz: float = 400.0
    max_hz: float = 2000.0
    min_s: float = 0.15
    max_s: float = 1.5
    #: energy share within ±band_hz of the peak for a frame to be tonal (see module doc)
    min_ratio: float = 0.75
    band_hz: float = 40.0
    #: a second non-harmonic component with this share of the energy makes it a dual tone (DTMF)
    two_tone_share: float = 0.08
    max_drift_hz: float = 20.0
    floor_dbfs: float = -45.0
    #: the level after a beep must fall this far below the beep's
    min_drop_db: float = 6.0
    #: the beep's frame levels (interior frames) must stay within this range: a steady tone at 10 dB SNR
    #: varies < 0.5 dB frame to frame; a decaying note (plucked, piano) falls 25-70 dB/s
    max_level_range_db: float = 3.0
    ringback_hz: float = 450.0
    ringback_tol_hz: float = 30.0
    ringback_min_s: float = 0.7
    #: the peak estimate's error (a few Hz at 10 dB SNR): a tone at a band edge is still in the band
    edge_tol_hz: float = 10.0


@dataclass(frozen=True)
class ToneEvent:
    kind: str  # beep | ringback | tone
    hz: float
    start_s: float
    end_s: float
    level_dbfs: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class FrameTone:
    hz: float
    ratio: float
    second: float  # share of the strongest non-harmonic other component
    level_dbfs: float


def _fold(hz: float) -> float:
    """Where a component at `hz` lands after sampling at 8 kHz."""
    return abs(((hz + SAMPLE_RATE / 2) % SAMPLE_RATE) - SAMPLE_RATE / 2)


def analyse(window: npt.NDArray[np.float64], band_hz: float = 40.0) -> FrameTone:
    """Peak frequency and tonality of one 320-sample window (two frames)."""
    spec = np.abs(np.fft.rfft(window * _WIN, _NFFT)) ** 2
    total = float(spec.sum())
    level = rms_dbfs(window[FRAME_SAMPLES:].astype(np.int16))
    if total <= 0.0:
        return FrameTone(0.0, 0.0, 0.0, level)
    k = int(np.argmax(spec))
    hz = float(_FREQS[k])
    if 0 < k < len(spec) - 1:  # parabolic interpolation of the peak on a log scale
        a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
        den = a - 2 * b + c
        if den < 0:
            hz += float(0.5 * (a - c) / den) * _BIN_HZ
    near = np.abs(_FREQS - hz) <= band_hz
    ratio = float(spec[near].sum()) / total
    rest = spec.copy()
    rest[near] = 0.0
    # harmonics of a clipped or distorted tone are not a second tone. Up to the 5th only: its energy is
    # <= 1/25 of the tone's, and the 6th harmonic of one DTMF tone folds onto the other (1209 -> 746 Hz)
    for m in range(2, 6):
        rest[np.abs(_FREQS - _fold(m * hz)) <= band_hz] = 0.0
    j = int(np.argmax(rest))
    second = float(rest[np.abs(_FREQS - _FREQS[j]) <= band_hz].sum()) / total
    return FrameTone(hz, ratio, second, level)


class ToneDetector:
    """Feed 20 ms frames; `feed` returns a ToneEvent when a tone has ended (<= 40 ms after its end)."""

    def __init__(self, config: ToneConfig | None = None) -> None:
        self.cfg = config or ToneConfig()
        self._prev = np.zeros(FRAME_SAMPLES, np.float64)
        self._t = 0.0
        self._run: list[FrameTone] = []
        self._run_start = 0.0
        self._ended: tuple[list[FrameTone], float, float] | None = None  # run waiting for the level drop
        self._after: list[float] = []
        #: the last frame was part of a single tone in the beep band (callers mask it out of speech timing)
        self.tonal = False
        #: the last frame was a single tone, in the beep band or not
        self.single = False
        self.last: FrameTone | None = None
        self._dtmf = GoertzelDetector()  # only its per-frame `classify` (no state)

    def _is_tonal(self, ft: FrameTone, frame: PCM) -> bool:
        c = self.cfg
        return (
            ft.level_dbfs > c.floor_dbfs
            and ft.ratio >= c.min_ratio
            and ft.second < c.two_tone_share
            and self._dtmf.classify(frame) is None
        )

    def feed(self, frame: PCM) -> ToneEvent | None:
        x = np.asarray(frame, dtype=np.float64)
        level = rms_dbfs(frame)
        if level <= self.cfg.floor_dbfs:  # never tonal (the level is the frame's own): spare the FFT
            ft = FrameTone(0.0, 0.0, 0.0, level)
        else:
            ft = analyse(np.concatenate([self._prev, x]), self.cfg.band_hz)
        self._prev = x
        self._t += FRAME_MS / 1000.0
        self.last = ft
        tonal = self._is_tonal(ft, frame)
        self.single = tonal
        event: ToneEvent | None = None
        if self._ended is not None:
            self._after.append(ft.level_dbfs)
            if len(self._after) >= 2:
                run, start, end = self._ended
                self._ended = None
                event = self._classify(run, start, end, min(self._after))
        if self._run:
            mean = float(np.mean([f.hz for f in self._run]))
            if tonal and abs(ft.hz - mean) <= self.cfg.max_drift_hz:
                self._run.append(ft)
                self.tonal = self._in_band(ft.hz)
                return event
            run, start = self._run, self._run_start
            self._run = []
            end = self._t - 2 * FRAME_MS / 1000.0  # the last tonal window ended one frame before
            if event is None and (end - start) >= self.cfg.min_s - 0.02:
                self._ended = (run, start, end)
                self._after = [ft.level_dbfs]
        if tonal:
            self._run = [ft]
            # the 40 ms window holds this frame and the one before: the tone began about then
            self._run_start = self._t - 2 * FRAME_MS / 1000.0
        self.tonal = tonal and self._in_band(ft.hz)
        return event

    def _in_band(self, hz: float) -> bool:
        c = self.cfg
        return c.min_hz - c.edge_tol_hz <= hz <= c.max_hz + c.edge_tol_hz

    def _classify(self, run: list[FrameTone], start: float, end: float, after_db: float) -> ToneEvent | None:
        c = self.cfg
        hz = float(np.median([f.hz for f in run]))
        levels = np.array([f.level_dbfs for f in run])
        level = float(np.median(levels))
        dur = end - start
        if abs(hz - c.ringback_hz) <= c.ringback_tol_hz and dur >= c.ringback_min_s:
            return ToneEvent("ringback", round(hz, 1), start, end, level)
        inner = levels[1:-1] if len(levels) > 3 else levels
        flat = float(inner.max() - inner.min()) <= c.max_level_range_db
        dropped = after_db <= level - c.min_drop_db
        if self._in_band(hz) and c.min_s - 0.02 <= dur <= c.max_s + 0.04 and flat and dropped:
            return ToneEvent("beep", round(hz, 1), start, end, level)
        if dur >= c.min_s - 0.02:
            return ToneEvent("tone", round(hz, 1), start, end, level)
        return None
