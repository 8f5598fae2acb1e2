"""Recorder alignment, FLAC/Opus/WAV output, and the retention purge."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import FRAME_SAMPLES
from gateway.recording import CallRecorder, purge, recording_path


def tone(freq: float, amp: int = 8000) -> np.ndarray:
    t = np.arange(FRAME_SAMPLES) / 8000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".wav"])
def test_two_channels_stay_aligned(tmp_path: Path, suffix: str) -> None:
    rec = CallRecorder()
    for i in range(100):  # 2 s: callee speaks in the first second, the robot in the second
        rec.inbound(tone(440) if i < 50 else None)
        rec.outbound(None if i < 50 else tone(1000))
    rec.stop()
    rec.inbound(tone(440))  # after stop: ignored
    assert rec.seconds == 2.0
    path = rec.write(recording_path(tmp_path, "call/../1", datetime(2026, 3, 2, tzinfo=UTC), suffix[1:]))
    assert path.parent.name == "2026-03-02" and ".." not in path.name
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000 and data.shape[1] == 2 and abs(len(data) - 16000) < 400
    first, second = data[: len(data) // 2 - 400], data[len(data) // 2 + 400 :]
    assert rms(first[:, 0]) > 1000 and rms(first[:, 1]) < 200  # callee left only
    assert rms(second[:, 1]) > 1000 and rms(second[:, 0]) < 200  # robot right only


def test_flac_is_compressed_and_lossless(tmp_path: Path) -> None:
    rec = CallRecorder()
    rng = np.random.default_rng(1)
    for _ in range(500):  # 10 s of quiet noise in, silence out
        rec.inbound((rng.normal(0, 300, FRAME_SAMPLES)).astype(np.int16))
        rec.outbound(None)
    path = rec.write(tmp_path / "a.flac")
    raw = 10 * 8000 * 2 * 2
    assert path.stat().st_size < raw * 0.6
    data, _ = sf.read(str(path), dtype="int16")
    assert np.array_equal(data, rec.stereo())


def test_purge_deletes_only_old_recordings(tmp_path: Path) -> None:
    old = tmp_path / "2025-01-01" / "old.flac"
    new = tmp_path / "2026-03-02" / "new.flac"
    other = tmp_path / "2025-01-01" / "notes.txt"
    for p in (old, new, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 200 * 86400, now - 200 * 86400))
    assert purge(tmp_path, 180, now=now) == 1
    assert not old.exists() and new.exists() and other.exists()
    assert purge(tmp_path / "missing", 1) == 0
