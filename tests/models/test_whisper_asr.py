from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.audio import PCM, ulaw_decode, ulaw_encode
from engine.errors import ModelError
from engine.ports import Recognizer
from models.asr.whisper import WhisperRecognizer, clean_text
from models.tts.kokoro import KokoroSynthesizer
from tests.fixtures.audio.corpus import labels, load

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
    # queued for the workers: all finish
    assert whisper.pending == 0
    assert len(gaps) > 10
    assert max(gaps) < 0.1, f"event loop stalled {max(gaps) * 1000:.0f} ms"


# --- telephone robustness: short noisy replies, echoed prompt, short window --------------------------


def test_echoed_prompt_and_loops_are_cut_from_the_text() -> None:
    assert clean_text("以下是普通话的句子。", "zh") == ""
    assert clean_text("普通话", "zh") == ""
    assert clean_text("以下是打给我了", "zh") == "打给我了"
    assert clean_text("请您您您您您您您您您您您您您您您", "zh") == "请您"
    assert clean_text("Connect me. Connect me. Connect me. Conn", "en") == "Connect me"
    # real speech is left alone
    assert clean_text("对对对对", "zh") == "对对对对"
    assert clean_text("可以可以", "zh") == "可以可以"
    assert clean_text("别再给我打电话了", "zh") == "别再给我打电话了"


def _noisy(pcm: PCM, snr_db: float, seed: int) -> PCM:
    """Telephone channel of the through-ASR eval (models/nlu/asr_eval.py): µ-law + white noise."""
    from models.nlu.asr_eval import telephone_channel

    return telephone_channel(pcm, snr_db, seed)


SHORT_ZH = ("bc_zh_dui", "bc_zh_haode", "reply_zh_no")


@pytest.mark.slow
@pytest.mark.parametrize("clip", SHORT_ZH)
async def test_short_noisy_zh_replies_give_text(whisper: WhisperRecognizer, cer: CER, clip: str) -> None:
    """Short replies (1.1-1.7 s) of the degraded corpus, with 15 dB white noise on top, are heard as
    text: the old recogniser returned nothing for 对 on the degraded copy."""
    ref = next(c["text"] for c in labels() if c["id"] == clip)
    for seed in (1, 2):
        pcm = _noisy(load(clip, degraded=True), 15.0, seed)
        result = await whisper.transcribe(pcm, language="zh")
        assert result.text, (clip, seed)
        heard, said = (re.sub(r"[\W_]+", "", t) for t in (result.text, ref))
        assert said in heard or cer(result.text, ref) <= 0.5, (clip, seed, result.text)
        assert not any(frag in result.text for frag in ("以下是", "普通话", "的句子")), result.text


@pytest.mark.slow
async def test_tts_short_reply_is_not_heard_as_the_prompt(
    kokoro: KokoroSynthesizer, whisper: WhisperRecognizer
) -> None:
    """要的 through the eval's 15 dB channel came back as the prompt 以下是普通话的句子 (or empty)."""
    pcm = _noisy(await kokoro.render("要的"), 15.0, 7)
    result = await whisper.transcribe(pcm, language="zh")
    assert result.text
    assert "以下是" not in result.text and "普通话" not in result.text, result.text
    assert "要" in result.text, result.text


@pytest.mark.slow
async def test_short_window_matches_full_window_on_corpus_replies(
    models_dest: Path, whisper: WhisperRecognizer, cer: CER
) -> None:
    full = WhisperRecognizer(models_dest / "whisper-base", short_window=False)
    try:
        for clip in ("reply_zh_price", "reply_zh_busy", "reply_en_no"):
            c = next(c for c in labels() if c["id"] == clip)
            pcm = load(clip, degraded=True)
            before = whisper.stats["short_window"]
            short_res = await whisper.transcribe(pcm, language=c["language"])
            assert whisper.stats["short_window"] == before + 1
            full_res = await full.transcribe(pcm, language=c["language"])
            assert full.stats["short_window"] == 0
            assert cer(short_res.text, c["text"]) <= 0.15, short_res.text
            assert cer(full_res.text, c["text"]) <= 0.15, full_res.text
    finally:
        full.close()


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["cough", "noise_burst"])
async def test_corpus_noise_clips_give_no_words(whisper: WhisperRecognizer, clip: str) -> None:
    result = await whisper.transcribe(load(clip), language="zh")
    assert len(result.text.strip(" ,.!?，。！？")) <= 2, result.text


@pytest.mark.slow
def test_short_window_setting_turns_it_off(models_dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCALL_WHISPER_SHORT_WINDOW", "off")
    rec = WhisperRecognizer(models_dest / "whisper-base")
    try:
        assert rec.short_window is False
        rec.transcribe_sync(load("reply_zh_price", degraded=True))
        assert rec.stats["short_window"] == 0 and rec.stats["utterances"] == 1
    finally:
        rec.close()
    monkeypatch.delenv("OUTCALL_WHISPER_SHORT_WINDOW")
    rec = WhisperRecognizer(models_dest / "whisper-base")
    try:
        assert rec.short_window is True
    finally:
        rec.close()
