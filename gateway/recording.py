"""Call recordings: both directions tapped on the RTP tick (so they stay aligned sample for sample),
written as stereo 8 kHz FLAC — left the callee, right the robot (or, across a bridge, the agent) — and
deleted after the retention period.

The tap runs on the 20 ms ticker's hot path: it copies two 320-byte frames into growing buffers and
does nothing else; encoding happens once, after the call, in a worker thread.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engine.audio import FRAME_SAMPLES, PCM, SAMPLE_RATE

log = logging.getLogger("outcall.recording")

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16).tobytes()
SUFFIXES = (".flac", ".ogg", ".wav")


class CallRecorder:
    """Collects the callee (inbound) and robot (outbound) frames of one call, one of each per tick."""

    def __init__(self, max_s: float = 3 * 3600) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self._max = int(max_s * SAMPLE_RATE) * 2
        self.stopped = False

    def inbound(self, frame: PCM | None) -> None:
        if not self.stopped and len(self._in) < self._max:
            self._in += _SILENCE if frame is None else frame.tobytes()

    def outbound(self, frame: PCM | None) -> None:
        if not self.stopped and len(self._out) < self._max:
            self._out += _SILENCE if frame is None else frame.tobytes()

    def stop(self) -> None:
        self.stopped = True

    @property
    def seconds(self) -> float:
        return max(len(self._in), len(self._out)) / 2 / SAMPLE_RATE

    def stereo(self) -> np.ndarray:
        """(n, 2) int16: column 0 the callee, column 1 the robot; the shorter side padded with silence."""
        a = np.frombuffer(bytes(self._in), dtype=np.int16)
        b = np.frombuffer(bytes(self._out), dtype=np.int16)
        n = max(len(a), len(b))
        out = np.zeros((n, 2), dtype=np.int16)
        out[: len(a), 0] = a
        out[: len(b), 1] = b
        return out

    def write(self, path: Path) -> Path:
        """Blocking: encode to FLAC (or .ogg Opus / .wav by the suffix). Run it in a worker thread."""
        import soundfile as sf

        path.parent.mkdir(parents=True, exist_ok=True)
        fmt, subtype = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "OPUS"), ".wav": ("WAV", "PCM_16")}[
            path.suffix.lower()
        ]
        sf.write(str(path), self.stereo(), SAMPLE_RATE, format=fmt, subtype=subtype)
        return path


def recording_path(root: Path, call_id: str, at: datetime, fmt: str = "flac") -> Path:
    """<root>/<YYYY-MM-DD>/<call_id>.<fmt>: a folder per UTC day keeps directories small and purging cheap."""
    safe = "".join(ch for ch in call_id if ch.isalnum() or ch in "-_")[:128] or "call"
    return root / at.astimezone(UTC).strftime("%Y-%m-%d") / f"{safe}.{fmt}"


def purge(root: Path, retention_days: float, *, now: float | None = None) -> int:
    """Delete recordings older than the retention period (by file time); returns how many. Blocking."""
    if not root.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - retention_days * 86400
    n = 0
    for p in root.rglob("*"):
        if p.is_file() and p.suffix.lower() in SUFFIXES and p.stat().st_mtime < cutoff:
            try:
                p.unlink()
                n += 1
            except OSError as e:
                log.warning("could not delete recording %s: %s", p, e)
    for d in sorted((d for d in root.rglob("*") if d.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return n
