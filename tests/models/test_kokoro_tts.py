from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.audio import rms_dbfs
from engine.errors import ModelError
from engine.ports import Synthesizer
from models.tts.kokoro import MAX_TOKENS, KokoroSynthesizer, voice_language
from models.tts.normalize import normalize as kokoro_normalize


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        KokoroSynthesizer(tmp_path)
    msg = str(err.value)
    assert "kokoro-v1.0.int8.onnx" in msg
    assert "make models" in msg
    assert "OUTCALL_KOKORO_DIR" in msg


def test_voice_language() -> None:
    assert voice_language("zm_yunjian") == "zh"
    assert voice_language("af_heart") == "en"
    with pytest.raises(ModelError, match="neither Mandarin"):
        voice_language("jf_alpha")


@pytest.mark.slow
async def test_renders_mandarin_at_8khz(kokoro: KokoroSynthesizer) -> None:
    synth: Synthesizer = kokoro
    pcm = await synth.render("我们这周六有一节免费的试听课")
    assert pcm.dtype == np.int16
    seconds = len(pcm) / 8000
    assert 1.5 < seconds < 6.0
    assert -35 < rms_dbfs(pcm) < -6
    # 8 kHz output has nothing above 4 kHz by construction; check it's not clipped flat
    assert int(np.abs(pcm).max()) < 32767


@pytest.mark.slow
async def test_speed_changes_duration(kokoro: KokoroSynthesizer) -> None:
    normal = await kokoro.render("请问您现在方便接听电话吗")
    fast = await kokoro.render("请问您现在方便接听电话吗", speed=1.4)
    assert len(fast) < 0.85 * len(normal)


@pytest.mark.slow
def test_long_sentence_is_split_at_clauses_to_fit_the_model(kokoro: KokoroSynthesizer) -> None:
    text = "您好，我们的课程每节课五十元，上课时间是每周六晚上七点半，" * 12 + "欢迎您来。"
    chunks = kokoro._chunks(text, "zh")
    assert len(chunks) >= 2
    assert all(0 < len(c) <= MAX_TOKENS for c in chunks)
    assert sum(len(c) for c in chunks) > MAX_TOKENS


@pytest.mark.slow
async def test_numbers_are_normalised_before_synthesis(kokoro: KokoroSynthesizer) -> None:
    digits = kokoro.phonemize(kokoro_normalize("每节课¥50", "zh"), "zh")
    assert digits == kokoro.phonemize("每节课五十元", "zh")
    pcm = await kokoro.render("每节课¥50")
    assert len(pcm) / 8000 > 0.8


@pytest.mark.slow
async def test_unknown_voice_lists_the_available_ones(kokoro: KokoroSynthesizer) -> None:
    with pytest.raises(ModelError, match="zm_yunjian"):
        await kokoro.render("你好", voice="zm_nobody")


@pytest.mark.slow
async def test_english_voice(kokoro: KokoroSynthesizer) -> None:
    pcm = await kokoro.render("Hello, this is Anna. The class costs $20.", voice="af_heart")
    assert len(pcm) / 8000 > 1.0


@pytest.mark.slow
async def test_concurrent_renders_queue_in_one_worker(kokoro: KokoroSynthesizer) -> None:
    outs = await asyncio.wait_for(
        asyncio.gather(*(kokoro.render(t) for t in ("好的", "再见", "您好"))), timeout=60
    )
    assert all(len(o) > 0 for o in outs)
