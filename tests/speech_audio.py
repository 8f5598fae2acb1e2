"""Real speech for pure tests: espeak-ng renders it (8 kHz mono int16), cached per process.

Tests that use it skip with a clear reason when espeak-ng or sox is absent (CI installs both)."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from engine.audio import PCM, rms_dbfs


def require_espeak() -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install espeak-ng sox)")


@functools.cache
def _render(text: str, voice: str, wpm: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="outcall-espeak-") as d:
        raw, out = Path(d) / "raw.wav", Path(d) / "out.raw"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
        subprocess.run(
            [
                "sox",
                str(raw),
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                "-t",
                "raw",
                str(out),
            ],
            check=True,
        )
        return out.read_bytes()


def speech(text: str, *, voice: str = "en-us", wpm: int = 160, level_dbfs: float = -20.0) -> PCM:
    """`text` spoken by espeak-ng at 8 kHz, scaled so its active speech sits at `level_dbfs`."""
    require_espeak()
    pcm = np.frombuffer(_render(text, voice, wpm), dtype="<i2").astype(np.float64)
    active = pcm[np.abs(pcm) > 100]
    cur = rms_dbfs(active.astype(np.int16)) if len(active) else -120.0
    scaled = pcm * 10.0 ** ((level_dbfs - cur) / 20.0)
    out: PCM = np.clip(np.round(scaled), -32768, 32767).astype(np.int16)
    return out
