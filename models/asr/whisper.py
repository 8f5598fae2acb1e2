"""faster-whisper (CTranslate2, Whisper base) utterance recogniser: Mandarin by default, English too.

Feed it VAD-gated utterances only. Model folder (assembled by `python -m models.install`, default
var/models/whisper-base): model.bin, config.json, tokenizer.json, vocabulary.json.

All inference runs in ONE worker thread. Utterances from any number of calls queue there in arrival
order: on CPU, batching several utterances into one encode+generate measured slower than running them one
after another (MODELS.md), so the worker runs them in order and `transcribe()` stays async and safe to call
concurrently. Near-silent or too-short audio returns an empty transcript without running the model
(Whisper hallucinates on silence), and known hallucination phrases are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio import PCM, rms_dbfs
from engine.errors import ModelError
from engine.ports import Transcript
from models.dsp import pcm_to_float, resample_float
from models.paths import ENV_WHISPER_MODEL, MAKE_MODELS, whisper_dir

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
PROMPTS = {"zh": "以下是普通话的句子。", "en": ""}
#: Phrases Whisper produces from noise/silence (subtitle credits, the prompt echoed back).
HALLUCINATIONS = (
    "以下是普通话的句子",
    "字幕由",
    "请不吝点赞",
    "订阅 转发 打赏",
    "明镜与点点",
    "Amara.org",
    "谢谢观看",
    "Thank you for watching",
    "Thanks for watching",
    "Subtitles by",
)


class WhisperRecognizer:
    """engine.ports.Recognizer on faster-whisper.

    Args:
        model_dir: CTranslate2 Whisper folder (default: $OUTCALL_WHISPER_MODEL or var/models/whisper-base).
        language: "zh" (default) or "en" (or any Whisper language code); per-call override in transcribe().
        cpu_threads: CTranslate2 intra-op threads (2 on a 2-core machine gave p50 0.66 s / 3.7 s utterance).
        max_new_tokens: cap on generated tokens per utterance (stops runaway repetition).
        min_duration_s / min_dbfs: below these the utterance is treated as silence (empty text).
        no_speech_threshold: segments Whisper itself marks as no-speech above this are dropped.
    """

    name = "whisper-base"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        language: str = "zh",
        cpu_threads: int = 2,
        max_new_tokens: int = 96,
        min_duration_s: float = 0.25,
        min_dbfs: float = -50.0,
        no_speech_threshold: float = 0.6,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else whisper_dir()
        self.language = language
        self.max_new_tokens = max_new_tokens
        self.min_duration_s = min_duration_s
        self.min_dbfs = min_dbfs
        self.no_speech_threshold = no_speech_threshold
        self._check_dir()
        t0 = time.perf_counter()
        self._model = self._load(cpu_threads)
        self.load_s = time.perf_counter() - t0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._pending = 0

    def _check_dir(self) -> None:
        hint = (
            f"run `{MAKE_MODELS}` (python -m models.install) or set {ENV_WHISPER_MODEL} to a faster-whisper "
            f"(CTranslate2) model folder holding {', '.join(REQUIRED_FILES)}"
        )
        if not self.model_dir.is_dir():
            raise ModelError(f"Whisper model folder {self.model_dir} does not exist", hint=hint)
        missing = [f for f in REQUIRED_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise ModelError(f"Whisper model folder {self.model_dir} lacks {', '.join(missing)}", hint=hint)

    def _load(self, cpu_threads: int) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelError("faster-whisper is not installed", hint="pip install -e '.[speech]'") from exc
        try:
            return WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type="int8",
                cpu_threads=max(1, cpu_threads),
                num_workers=1,
                local_files_only=True,
            )
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise ModelError(
                f"Whisper model in {self.model_dir} could not be loaded (corrupt or not CTranslate2): {exc}",
                hint=f"delete the folder and run `{MAKE_MODELS}` again, or fix {ENV_WHISPER_MODEL}",
            ) from exc

    @property
    def pending(self) -> int:
        """Utterances queued or running in the worker."""
        return self._pending

    def is_silence(self, pcm: PCM, sample_rate: int) -> bool:
        return len(pcm) < self.min_duration_s * sample_rate or rms_dbfs(pcm) < self.min_dbfs

    def transcribe_sync(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        """Blocking transcription (the worker runs this); use `transcribe()` from async code."""
        lang = language or self.language
        t0 = time.perf_counter()
        if self.is_silence(pcm, sample_rate):
            return Transcript(text="", confidence=0.0, language=lang, engine=self.name, latency_ms=0.0)
        audio = _prepare(pcm, sample_rate)
        segments, _info = self._model.transcribe(
            audio,
            language=lang,
            task="transcribe",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            initial_prompt=PROMPTS.get(lang) or None,
            condition_on_previous_text=False,
            without_timestamps=True,
            max_new_tokens=self.max_new_tokens,
            vad_filter=False,
            word_timestamps=False,
        )
        texts: list[str] = []
        logprobs: list[float] = []
        for seg in segments:  # a generator: decoding happens while iterating
            if seg.no_speech_prob > self.no_speech_threshold and seg.avg_logprob < -1.0:
                continue
            text = seg.text.strip()
            if not text or any(h.lower() in text.lower() for h in HALLUCINATIONS):
                continue
            texts.append(text)
            logprobs.append(seg.avg_logprob)
        joiner = "" if lang in ("zh", "ja") else " "
        text = joiner.join(texts).strip()
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
        return Transcript(
            text=text,
            confidence=round(min(1.0, confidence), 3),
            language=lang,
            engine=self.name,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
        )

    async def transcribe(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        """Transcribe one VAD-gated utterance. Safe to call from many calls at once: requests queue for the
        single worker; latency_ms includes the queueing time."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        self._pending += 1
        try:
            result = await loop.run_in_executor(
                self._executor,
                lambda: self.transcribe_sync(pcm, sample_rate=sample_rate, language=language),
            )
        except ModelError:
            raise
        except Exception as exc:  # a bad utterance must not kill the call or the worker
            log.exception("whisper failed on a %d-sample utterance", len(pcm))
            raise ModelError(f"Whisper failed: {exc}") from exc
        finally:
            self._pending -= 1
        result.latency_ms = (time.perf_counter() - t0) * 1000.0
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _prepare(pcm: PCM, sample_rate: int) -> npt.NDArray[np.float32]:
    """int16 PCM at any rate -> 16 kHz float32 in [-1, 1]."""
    audio = pcm_to_float(np.asarray(pcm, dtype=np.int16))
    return resample_float(audio, sample_rate, WHISPER_RATE)
