from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.audio import PCM, ulaw_decode, ulaw_encode
from engine.errors import ModelError
from engine.ports import Recognizer
from models.asr.whisper import WhisperRecognizer
from models.tts.kokoro import KokoroSynthesizer

CER = Callable[[str, str], float]

ZH_TEXT = "我们这周六有一节免费的试听课"
EN_TEXT = "We have a free trial class this Saturday morning."


def through_phone(pcm: PCM) -> PCM:
    """What the far end hears: 8 kHz G.711 µ-law."""
    return ulaw_decode(ulaw_encode(pcm))


def test_missing_model_dir_names_setting_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        WhisperRecognizer(tmp_path / "nope")
    msg = str(err.value)
    assert "does not exist" in msg
    assert "OUTCALL_WHISPER_MODEL" in msg
    assert "make models" in msg


def test_incomplete_model_dir_lists_missing_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"lacks model\.bin, tokenizer\.json, vocabulary\.json"):
        WhisperRecognizer(tmp_path)


@pytest.mark.slow
def test_corrupt_model_is_a_model_error(tmp_path: Path, models_dest: Path) -> None:
    src = models_dest / "whisper-base"
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / "model.bin").write_bytes(b"not a ctranslate2 model" * 100)
    with pytest.raises(ModelError, match="could not be loaded"):
        WhisperRecognizer(tmp_path)


@pytest.mark.slow
async def test_kokoro_zh_round_trip_through_ulaw(
    kokoro: KokoroSynthesizer, whisper: WhisperRecognizer, cer: CER
) -> None:
    rec: Recognizer = whisper
    pcm = await kokoro.render(ZH_TEXT)
    result = await rec.transcribe(through_phone(pcm), sample_rate=8000)
    assert result.language == "zh"
    assert result.engine == "whisper-base"
    assert cer(result.text, ZH_TEXT) <= 0.15, result.text
    # the prompt keeps Whisper in simplified characters
    assert "節" not in result.text and "試聽課" not in result.text
    assert 0.0 < result.confidence <= 1.0


@pytest.mark.slow
async def test_kokoro_en_round_trip_through_ulaw(
    kokoro: KokoroSynthesizer, whisper: WhisperRecognizer, cer: CER
) -> None:
    pcm = await kokoro.render(EN_TEXT, voice="af_heart")
    result = await whisper.transcribe(through_phone(pcm), language="en")
    assert result.language == "en"
    assert cer(result.text, EN_TEXT) <= 0.15, result.text


@pytest.mark.slow
async def test_silence_and_noise_give_empty_text_without_hallucination(whisper: WhisperRecognizer) -> None:
    silence = np.zeros(16000, dtype=np.int16)
    assert (await whisper.transcribe(silence)).text == ""
    hiss = (np.random.default_rng(1).standard_normal(16000) * 20).astype(np.int16)  # about -64 dBFS
    assert (await whisper.transcribe(hiss)).text == ""
    blip = (np.random.default_rng(2).standard_normal(800) * 3000).astype(np.int16)  # 0.1 s
    assert (await whisper.transcribe(blip)).text == ""


@pytest.mark.slow
async def test_concurrent_transcribe_keeps_the_loop_responsive(
    kokoro: KokoroSynthesizer, whisper: WhisperRecognizer, cer: CER
) -> None:
    texts = ["您好，请问是王先生吗", "我们这周六有一节免费的试听课", "好的，那我们周六见"]
    audios = [through_phone(await kokoro.render(t)) for t in texts]

    stop = asyncio.Event()
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    hb = asyncio.create_task(heartbeat())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(whisper.transcribe(a) for a in audios)), timeout=120
        )
    finally:
        stop.set()
        await hb
    for text, result in zip(texts, results, strict=True):
        assert cer(result.text, text) <= 0.2, (text, result.text)
    # queued in one worker: latencies grow with queue position, all finish
    assert whisper.pending == 0
    assert len(gaps) > 10
    assert max(gaps) < 0.1, f"event loop stalled {max(gaps) * 1000:.0f} ms"
