from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from engine.audio import rms_dbfs
from engine.errors import ModelError
from models.tts.espeak import EspeakSynthesizer, parse_wav


def _wav(samples: list[int], rate: int = 22050, data_size: int | None = None) -> bytes:
    raw = struct.pack(f"<{len(samples)}h", *samples)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    size = len(raw) if data_size is None else data_size
    return (
        b"RIFF"
        + struct.pack("<I", 0x7FFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", size) + raw)
    )


def test_parse_wav_reads_known_bytes() -> None:
    pcm, rate = parse_wav(_wav([0, 1000, -1000, 32767]))
    assert rate == 22050
    assert pcm.tolist() == [0, 1000, -1000, 32767]


def test_parse_wav_tolerates_streamed_unknown_length() -> None:
    pcm, _ = parse_wav(_wav([5, 6, 7], data_size=0x7FFFFFFF))
    assert pcm.tolist() == [5, 6, 7]


def test_parse_wav_rejects_garbage() -> None:
    with pytest.raises(ModelError):
        parse_wav(b"hello world, not a wav")


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="apt-get install espeak-ng"):
        EspeakSynthesizer(binary="espeak-ng-does-not-exist")


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")


@needs_espeak
@pytest.mark.parametrize(
    ("voice", "text"), [("cmn", "您好，每节课¥50"), ("en-us", "Hello, the class costs $20.")]
)
async def test_renders_non_empty_8khz_audio(voice: str, text: str) -> None:
    pcm = await EspeakSynthesizer(voice).render(text)
    assert pcm.dtype == np.int16
    assert len(pcm) / 8000 > 0.8
    assert rms_dbfs(pcm) > -40


@needs_espeak
async def test_unknown_voice_is_a_model_error_not_a_silent_fallback() -> None:
    with pytest.raises(ModelError, match="no voice 'no-such-voice-zz'"):
        EspeakSynthesizer("no-such-voice-zz")
    synth = EspeakSynthesizer("en-us")
    with pytest.raises(ModelError, match="espeak-ng --voices"):
        await synth.render("hello", voice="zz-nope")
