"""What the line plays before answer (early media): ringback tone, 彩铃 music, or a carrier announcement.

Early media is never the callee: the session reads it before answer (so that none of it is still queued
and heard as the callee's first words after answer) and feeds each frame here. Sound is found against a
percentile floor (the `floor_pct` percentile of the last `floor_s` of frame levels): early media starts
with line noise from its first frame, which the session's adaptive endpointer takes for speech and never
learns as its floor; a minimum would lag a noise level that rises (RTP starting, a trunk's comfort noise)
by the whole window. A sound segment ends after `gap_s` without sound (or at `max_s`) and is classified:

* `tone`: most loud frames are a single tone (the share of energy near the peak, as in `engine.call.beep`:
  ringback 450 Hz and other call-progress tones) or hold `ringing_share` of their energy within
  `ringing_band_hz`: the ringing tones of ITU-T E.180 lie in 400-450 Hz, the North American one is
  440 + 480 Hz (two tones 40 Hz apart beat, so neither is a single tone nor a steady spectrum). A tone is
  sound even before the floor has heard anything else (ringback from the first packet);
* `music`: the spectrum holds still from one 20 ms frame to the next (cosine similarity of the 40 ms
  power spectra >= `stable_sim`; power, not magnitude, so that line noise weighs little against the
  partials) on most loud frames: a note sustains its partials for 150 ms or more, while speech moves its
  formants and pitch every few tens of ms. Measured: corpus speech segments are stable on <= 45 % of their
  loud frames clean and degraded, <= 51 % with white noise at 10 dB SNR; tunes (pure or with harmonics,
  flat or decaying notes) on >= 77 % at 15-20 dB SNR and >= 62 % at 10 dB. A single sustained vowel (对)
  reaches 70 %, so a segment needs `music_min_s` of sound first. Music at 10 dB SNR that plays from the
  first frame is mostly below the floor (not sound at all); short pieces of it go to the recogniser as
  speech (at most the session's `early_asr_max` utterances: a cost, never a disposition);
* `speech`: the rest. Only speech goes to the recogniser and the text rules (a carrier announcement:
  您拨打的电话已关机 ...); tone and music are neither a human nor an announcement.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.audio import FRAME_MS, FRAME_SAMPLES, PCM, SAMPLE_RATE, rms_dbfs

_NFFT = 512
_WIN = np.hanning(2 * FRAME_SAMPLES)
_FREQS = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLE_RATE)


@dataclass(frozen=True)
class EarlyConfig:
    #: share of a segment's loud frames that must be single-tone for `tone`
    tone_share: float = 0.6
    #: a frame is one tone when this share of its energy lies within +-tone_band_hz of its peak (as in
    #: engine.call.beep: a sine at 6 dB SNR still gives 0.8, voiced speech spreads over harmonics)
    tone_ratio: float = 0.75
    tone_band_hz: float = 40.0
    ringing_band_hz: tuple[float, float] = (380.0, 500.0)
    ringing_share: float = 0.8
    #: spectral similarity of consecutive frames that counts as "held still"
    stable_sim: float = 0.9
    #: share of held-still loud frames for `music` (speech <= 0.51, tunes >= 0.62: see above)
    music_share: float = 0.6
    #: a segment shorter than this is never music (a sustained vowel holds still for up to ~1 s)
    music_min_s: float = 1.5
    #: a segment is judged on its frames within this many dB of its loudest: a tone or a tune 10 dB above
    #: the line noise is judged on itself, not on noise frames that the segment's edges let in
    loud_range_db: float = 10.0
    #: sound: this far above the `floor_pct` percentile of the last `floor_s` of levels (ringback is off
    #: 80 % of the time, announcements pause between phrases) and above `abs_floor_dbfs`
    snr_db: float = 6.0
    floor_s: float = 5.0
    floor_pct: float = 10.0
    abs_floor_dbfs: float = -45.0
    #: a segment ends after this long without sound (announcements pause <= 0.45 s inside a sentence)
    gap_s: float = 0.6
    #: a segment is cut at this length (a 彩铃 loops for a minute)
    max_s: float = 15.0
    #: audio kept before a segment's first sound frame
    preroll_s: float = 0.2


@dataclass(frozen=True)
class Segment:
    kind: str  # tone | music | speech
    pcm: PCM
    seconds: float  # seconds of sound in it


@dataclass
class EarlyMediaReport:
    """Seconds of each kind of sound heard before answer; `ringback`: tone segments in the ringing band."""

    tone_s: float = 0.0
    music_s: float = 0.0
    speech_s: float = 0.0
    segments: int = 0
    ringback: int = 0

    @property
    def kind(self) -> str | None:
        """The main kind of early media (None: silence only)."""
        got = {"tone": self.tone_s, "music": self.music_s, "speech": self.speech_s}
        best = max(got, key=lambda k: got[k])
        return best if got[best] > 0 else None


class EarlyMediaMonitor:
    def __init__(self, config: EarlyConfig | None = None) -> None:
        self.cfg = config or EarlyConfig()
        self.report = EarlyMediaReport()
        self._prev = np.zeros(FRAME_SAMPLES, np.float64)
        self._spec: npt.NDArray[np.float64] | None = None  # of the previous frame when it was analysed
        self._levels: list[float] = []
        self._tonal: list[bool] = []
        self._ringing: list[bool] = []
        self._stable: list[bool] = []
        c = self.cfg
        self._floor = np.zeros(max(1, round(c.floor_s * 1000 / FRAME_MS)))  # ring buffer of levels
        self._n = 0
        self._pre: deque[PCM] = deque(maxlen=max(1, round(c.preroll_s * 1000 / FRAME_MS)))
        self._pcm: list[PCM] = []
        self._quiet = 0
        lo, hi = c.ringing_band_hz
        self._band = np.abs(_FREQS - (lo + hi) / 2) <= (hi - lo) / 2

    def feed(self, frame: PCM) -> Segment | None:
        """One 20 ms frame; a segment when one ended with this frame. Frames below `abs_floor_dbfs` (the
        line between ringback bursts) cost a level and nothing more."""
        c = self.cfg
        x = np.asarray(frame, dtype=np.float64)
        before, self._prev = self._prev, x
        level = rms_dbfs(frame)
        self._floor[self._n % len(self._floor)] = level
        self._n += 1
        held = self._floor[: min(self._n, len(self._floor))]
        k = int(len(held) * c.floor_pct / 100.0)
        floor = float(np.partition(held, k)[k])
        tone = ringing = stable = False
        if level >= c.abs_floor_dbfs:
            spec = np.abs(np.fft.rfft(np.concatenate([before, x]) * _WIN, _NFFT)) ** 2
            prev, self._spec = self._spec, spec
            total = float(spec.sum())
            if total > 0:
                peak = _FREQS[int(np.argmax(spec))]
                tone = float(spec[np.abs(_FREQS - peak) <= c.tone_band_hz].sum()) >= c.tone_ratio * total
                ringing = float(spec[self._band].sum()) >= c.ringing_share * total
            if prev is not None:
                den = float(np.linalg.norm(spec) * np.linalg.norm(prev))
                stable = den > 0 and float(spec @ prev) / den >= c.stable_sim
        else:
            self._spec = None
        # a tone is sound even where it is all the floor has heard yet (ringback from the first packet)
        sound = level >= c.abs_floor_dbfs and (level >= floor + c.snr_db or tone or ringing)
        if not self._pcm:
            if not sound:
                self._pre.append(frame)
                return None
            self._pcm = list(self._pre)
            self._pre.clear()
        self._pcm.append(frame)
        if not sound:
            self._quiet += 1
            if self._quiet * FRAME_MS / 1000.0 >= c.gap_s:
                return self.flush()
            return None
        self._quiet = 0
        self._levels.append(level)
        self._tonal.append(tone or ringing)
        self._ringing.append(ringing)
        self._stable.append(stable)
        if len(self._pcm) * FRAME_MS / 1000.0 >= c.max_s:
            return self.flush()
        return None

    def flush(self) -> Segment | None:
        """End the current segment (at answer too): classified, or None when there was no sound."""
        levels, tonal, stable = np.array(self._levels), np.array(self._tonal), np.array(self._stable)
        ringing = np.array(self._ringing)
        pcm = np.concatenate(self._pcm) if self._pcm else np.zeros(0, np.int16)
        self._levels, self._tonal, self._ringing, self._stable = [], [], [], []
        self._pcm, self._quiet = [], 0
        if len(levels) == 0:
            return None
        c = self.cfg
        loud = levels >= levels.max() - c.loud_range_db
        seconds = len(levels) * FRAME_MS / 1000.0
        if float(tonal[loud].mean()) >= c.tone_share:
            kind = "tone"
            self.report.tone_s += seconds
            self.report.ringback += float(ringing[loud].mean()) >= c.tone_share
        elif seconds >= c.music_min_s and float(stable[loud].mean()) >= c.music_share:
            kind = "music"
            self.report.music_s += seconds
        else:
            kind = "speech"
            self.report.speech_s += seconds
        self.report.segments += 1
        return Segment(kind, pcm, seconds)
