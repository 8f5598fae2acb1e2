"""RFC 4733 payloads and the in-band Goertzel detector on synthesized tones."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import frames_of, ulaw_decode, ulaw_encode
from gateway.rtp.dtmf import EVENTS, GoertzelDetector, decode_event, encode_event, tone
from gateway.rtp.packet import PacketError


def test_event_payload_golden_bytes_and_round_trip() -> None:
    # '#' (11), end bit, volume 10, duration 800 (100 ms)
    data = encode_event(11, end=True, volume=10, duration=800)
    assert data == bytes.fromhex("0b8a0320")
    ev = decode_event(data)
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (11, True, 10, 800, "#")
    assert decode_event(encode_event(3, end=False, duration=70000)).duration == 0xFFFF
    with pytest.raises(PacketError):
        decode_event(b"\x01\x02")


def detect(pcm: np.ndarray) -> list[tuple[str, int]]:
    det = GoertzelDetector()
    out: list[tuple[str, int]] = []
    for f in frames_of(pcm):
        out += det.feed(f)
    return out + det.flush()


def sequence(digits: str, on_ms: int = 100, off_ms: int = 80, level: float = -10.0) -> np.ndarray:
    parts = [np.zeros(400, dtype=np.int16)]
    for d in digits:
        parts += [tone(d, on_ms, level_dbfs=level), np.zeros(8 * off_ms, dtype=np.int16)]
    return np.concatenate(parts)


def test_goertzel_detects_all_sixteen_digits_clean() -> None:
    got = detect(sequence(EVENTS))
    assert "".join(d for d, _ in got) == EVENTS
    assert all(60 <= ms <= 120 for _, ms in got)


def test_goertzel_with_noise_and_mulaw() -> None:
    rng = np.random.default_rng(1)
    clean = sequence("159#*0D", level=-16.0).astype(np.float64)
    # white noise 12 dB below the tone pair
    tone_rms = np.sqrt(np.mean(tone("5", 100, level_dbfs=-16.0).astype(np.float64) ** 2))
    noisy = clean + rng.standard_normal(len(clean)) * tone_rms / 4
    noisy16 = np.clip(noisy, -32768, 32767).astype(np.int16)
    degraded = ulaw_decode(ulaw_encode(noisy16))  # through an 8 kHz G.711 leg
    assert "".join(d for d, _ in detect(degraded)) == "159#*0D"


def test_goertzel_rejects_short_blips_speechlike_audio_and_single_tones() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(16000) / 8000
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    voice = sum(np.sin(k * phase) / k for k in range(1, 15)) * 6000 + rng.standard_normal(len(t)) * 300
    assert detect(voice.astype(np.int16)) == []
    assert detect((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)) == []  # 1 kHz test tone
    assert detect((8000 * np.sin(2 * np.pi * 697 * t)).astype(np.int16)) == []  # one row tone only
    assert detect(sequence("7", on_ms=20)) == []  # below the 40 ms minimum
    assert detect(sequence("7", level=-50.0)) == []  # too quiet


def test_goertzel_classify_many_matches_classify_block_by_block() -> None:
    """The ticker classifies all sessions' frames in one call: it must decide exactly like classify()."""
    rng = np.random.default_rng(3)
    blocks = []
    for d in EVENTS:
        for level in (-10.0, -30.0, -45.0):
            blocks += frames_of(tone(d, 60, level_dbfs=level))
    blocks += [
        (rng.standard_normal(160) * a).astype(np.int16) for a in (0, 30, 3000, 20000) for _ in range(8)
    ]
    t = np.arange(160) / 8000
    for f in np.linspace(600.0, 1700.0, 60):  # chords and near-misses around the DTMF grid
        blocks.append(
            (8000 * np.sin(2 * np.pi * f * t) + 6000 * np.sin(2 * np.pi * 1.6 * f * t)).astype(np.int16)
        )
    det = GoertzelDetector()
    one_by_one = [det.classify(b) for b in blocks]
    assert sum(d is not None for d in one_by_one) >= 2 * len(EVENTS)  # the set has digits and non-digits
    assert det.classify_many(np.stack(blocks)) == one_by_one
    assert det.classify_many(np.zeros((0, 160), dtype=np.int16)) == []


def test_goertzel_step_after_classify_many_reports_like_feed() -> None:
    pcm = sequence("7#")
    frames = frames_of(pcm)
    batch = GoertzelDetector()
    got: list[tuple[str, int]] = []
    for d in batch.classify_many(np.stack(frames)):
        got += batch.step(d)
    assert got + batch.flush() == detect(pcm)
