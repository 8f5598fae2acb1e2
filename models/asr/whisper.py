"""faster-whisper (CTranslate2, Whisper base) utterance recogniser: Mandarin by default, English too.

Feed it VAD-gated utterances only. Model folder (assembled by `python -m models.install`, default
var/models/whisper-base): model.bin, config.json, tokenizer.json, vocabulary.json.

All inference runs in `num_workers` worker threads (CTranslate2 replicas; default 2 of 1 thread each,
which measured up to 2x the utterances/s of one 2-thread worker with 2-3 callers at once on 2 cores:
bench/asr.py --throughput). Utterances from any number of calls queue there in arrival order: on CPU,
batching several utterances into one encode+generate measured slower than running them one after another
(MODELS.md), so `transcribe()` stays async and safe to call concurrently.

The utterance is decoded by CTranslate2 directly (faster-whisper's model, feature extractor and tokenizer,
not its `transcribe()`), because telephone replies are short and noisy:

- Near-silent or too-short audio returns an empty transcript without running the model (Whisper
  hallucinates on silence).
- The utterance gets `pad_s` of digital silence on both sides: a reply that starts and ends right at the
  edges ("要的", "不买") was often heard as nothing or as something else.
- faster-whisper's own no-speech/log-prob skip is not used (it threw away short real replies); a
  transcript is dropped only when Whisper is very sure there is no speech, or when a likely no-speech
  decode is the prompt echoed back or a 《title》.
- Short utterances are encoded on a shorter window than Whisper's padded 30 s (like whisper.cpp's
  audio_ctx; `short_window`), which is several times faster; a transcript that comes out garbled
  (a repeated phrase, the prompt echoed back, nothing) or unsure is decoded again on the full window.
- The initial prompt (以下是普通话的句子。) keeps Mandarin in simplified characters; when Whisper echoes it
  back, the echo is cut from the text, and known hallucination phrases are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio import PCM, rms_dbfs
from engine.errors import ModelError
from engine.ports import Transcript
from models.dsp import pcm_to_float, resample_float
from models.paths import ENV_WHISPER_MODEL, ENV_WHISPER_SHORT_WINDOW, MAKE_MODELS, whisper_dir

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
#: mel frames per second (hop 160 at 16 kHz) and Whisper's full window (30 s).
FRAMES_PER_S = 100
FULL_WINDOW = 3000
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
_PUNCT = " ,.!?;:，。！？、；：…"
#: one character said 6+ times in a row, or a phrase of 2-40 characters 3+ times: Whisper looping.
_REPEAT = re.compile(r"(.)(?:[\s,，、。.]*\1){5,}|(.{2,40}?)(?:[\s,，、。.!?]*\2){2,}", re.DOTALL)


@dataclass
class _Decoded:
    text: str
    avg_logprob: float
    no_speech_prob: float


class WhisperRecognizer:
    """engine.ports.Recognizer on faster-whisper.

    Args:
        model_dir: CTranslate2 Whisper folder (default: $OUTCALL_WHISPER_MODEL or var/models/whisper-base).
        language: "zh" (default) or "en" (or any Whisper language code); per-call override in transcribe().
        cpu_threads: CTranslate2 intra-op threads per worker.
        num_workers: utterances decoded at the same time (CTranslate2 replicas, one thread each here).
        max_new_tokens: cap on generated tokens per utterance (stops runaway repetition).
        min_duration_s / min_dbfs: below these the utterance is treated as silence (empty text).
        no_speech_threshold / no_speech_logprob / sure_no_speech: a transcript whose no-speech probability
            is above the first and average log-probability below the second is dropped only when the
            no-speech probability is also above `sure_no_speech`, or the text is the prompt echoed back or
            a bracketed 《title》 (what Whisper makes of coughs, bursts and ring-back music).
        pad_s: digital silence added before and after the utterance.
        short_window: encode utterances shorter than the full 30 s window on a window of
            `min_window_s` or the utterance plus 1 s, whichever is longer (faster; False: always 30 s;
            None: on unless $OUTCALL_WHISPER_SHORT_WINDOW is 0/false/off).
        min_window_s: the shortest window used by `short_window`.
        retry_logprob: a short-window transcript that is garbled or whose average token log-probability
            is below this is decoded again on the full window; the likelier of the two is kept.
    """

    name = "whisper-base"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        language: str = "zh",
        cpu_threads: int = 1,
        num_workers: int = 2,
        max_new_tokens: int = 96,
        min_duration_s: float = 0.25,
        min_dbfs: float = -50.0,
        no_speech_threshold: float = 0.6,
        no_speech_logprob: float = -1.0,
        sure_no_speech: float = 0.8,
        pad_s: float = 0.5,
        short_window: bool | None = None,
        min_window_s: float = 10.0,
        retry_logprob: float = -0.5,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else whisper_dir()
        self.language = language
        self.max_new_tokens = max_new_tokens
        self.min_duration_s = min_duration_s
        self.min_dbfs = min_dbfs
        self.no_speech_threshold = no_speech_threshold
        self.no_speech_logprob = no_speech_logprob
        self.sure_no_speech = sure_no_speech
        self.pad_s = pad_s
        if short_window is None:
            env = os.environ.get(ENV_WHISPER_SHORT_WINDOW, "1").strip().lower()
            short_window = env not in ("0", "false", "off", "no")
        self.short_window = short_window
        self.min_window_s = min_window_s
        self.retry_logprob = retry_logprob
        self.stats: dict[str, int] = {"utterances": 0, "short_window": 0, "retries": 0}
        self._check_dir()
        t0 = time.perf_counter()
        self.num_workers = max(1, num_workers)
        self._model = self._load(cpu_threads)
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.load_s = time.perf_counter() - t0
        self._executor = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="whisper")
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
                num_workers=self.num_workers,
                local_files_only=True,
            )
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise ModelError(
                f"Whisper model in {self.model_dir} could not be loaded (corrupt or not CTranslate2): {exc}",
                hint=f"delete the folder and run `{MAKE_MODELS}` again, or fix {ENV_WHISPER_MODEL}",
            ) from exc

    def _tokenizer(self, lang: str) -> Any:
        with self._lock:
            return self._tokenizer_locked(lang)

    def _tokenizer_locked(self, lang: str) -> Any:
        tok = self._tokenizers.get(lang)
        if tok is None:
            from faster_whisper.tokenizer import Tokenizer

            try:
                tok = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=lang)
            except ValueError as exc:
                raise ModelError(
                    f"Whisper has no language {lang!r}", hint="use a Whisper language code such as zh or en"
                ) from exc
            self._tokenizers[lang] = tok
        return tok

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    @property
    def pending(self) -> int:
        """Utterances queued or running in the workers."""
        return self._pending

    def is_silence(self, pcm: PCM, sample_rate: int) -> bool:
        return len(pcm) < self.min_duration_s * sample_rate or rms_dbfs(pcm) < self.min_dbfs

    def transcribe_sync(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        """Blocking transcription (a worker thread runs this); use `transcribe()` from async code."""
        lang = language or self.language
        t0 = time.perf_counter()
        if self.is_silence(pcm, sample_rate):
            return Transcript(text="", confidence=0.0, language=lang, engine=self.name, latency_ms=0.0)
        self._count("utterances")
        audio = _prepare(pcm, sample_rate)
        pad = np.zeros(int(self.pad_s * WHISPER_RATE), dtype=np.float32)
        step = (FULL_WINDOW - FRAMES_PER_S) * (WHISPER_RATE // FRAMES_PER_S)  # 29 s pieces
        texts: list[str] = []
        logprobs: list[float] = []
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            if start and len(piece) < self.min_duration_s * WHISPER_RATE:
                break
            decoded = self._decode(np.concatenate([pad, piece, pad]), lang)
            if decoded is not None and decoded.text:
                texts.append(decoded.text)
                logprobs.append(decoded.avg_logprob)
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

    def _decode(self, audio: npt.NDArray[np.float32], lang: str) -> _Decoded | None:
        """One <= 30 s piece of 16 kHz audio -> cleaned text, or None for no speech."""
        features = self._model.feature_extractor(audio)
        frames = min(FULL_WINDOW, features.shape[-1])
        window = FULL_WINDOW
        if self.short_window:
            want = max(int(self.min_window_s * FRAMES_PER_S), frames + FRAMES_PER_S)
            window = min(FULL_WINDOW, -(-want // FRAMES_PER_S) * FRAMES_PER_S)
        first = self._generate(features, frames, window, lang)
        result = first
        if window < FULL_WINDOW:
            self._count("short_window")
            short_bad = _garbled(first.text, lang)
            if short_bad or first.avg_logprob < self.retry_logprob:
                self._count("retries")
                full = self._generate(features, frames, FULL_WINDOW, lang)
                full_bad = _garbled(full.text, lang)
                if short_bad != full_bad:
                    result = first if full_bad else full
                elif full.avg_logprob >= first.avg_logprob:
                    result = full
        if result.no_speech_prob > self.no_speech_threshold and result.avg_logprob < self.no_speech_logprob:
            # Whisper's own no-speech test alone threw away short real replies ("要的", "不买"): drop only
            # when it is very sure, or when what it "heard" is the prompt or a bracketed title (noise).
            core = result.text.strip(_PUNCT)
            echo = any(frag in core for frag in _prompt_fragments(lang))
            title = core.startswith("《") and core.endswith("》")
            if result.no_speech_prob > self.sure_no_speech or echo or title or not core:
                return None
        result.text = clean_text(result.text, lang)
        return result

    def _generate(self, features: npt.NDArray[np.float32], frames: int, window: int, lang: str) -> _Decoded:
        import ctranslate2

        mel = np.zeros((1, features.shape[0], window), dtype=np.float32)
        mel[0, :, :frames] = features[:, :frames]
        tok = self._tokenizer(lang)
        prompt: list[int] = []
        initial = PROMPTS.get(lang)
        if initial:
            prompt = [tok.sot_prev, *tok.encode(" " + initial)]
        prompt += [*tok.sot_sequence, tok.no_timestamps]
        model = self._model.model
        encoded = model.encode(ctranslate2.StorageView.from_array(mel))
        res = model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + self.max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        ids = res.sequences_ids[0]
        avg_logprob = float(res.scores[0]) * len(ids) / (len(ids) + 1)
        return _Decoded(tok.decode(ids).strip(), avg_logprob, float(res.no_speech_prob))

    async def transcribe(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        """Transcribe one VAD-gated utterance. Safe to call from many calls at once: requests queue for the
        workers; latency_ms includes the queueing time."""
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


def _prompt_fragments(lang: str) -> list[str]:
    """Pieces of 3+ characters of the initial prompt (以下是普通话的句子, 以下是, 普通话 ...), longest 1st."""
    core = PROMPTS.get(lang, "").strip(_PUNCT)
    frags = {core[i:j] for i in range(len(core)) for j in range(i + 3, len(core) + 1)}
    return sorted(frags, key=len, reverse=True)


def clean_text(text: str, lang: str) -> str:
    """Cut an echoed prompt, drop hallucination phrases and collapse a phrase repeated 4+ times."""
    text = text.strip()
    if any(h.lower() in text.lower() and len(text) <= len(h) + 2 for h in HALLUCINATIONS):
        return ""
    for frag in _prompt_fragments(lang):
        if text.startswith(frag) and PROMPTS[lang].startswith(frag):
            text = text[len(frag) :].lstrip(_PUNCT)
            break
    if text.strip(_PUNCT) in _prompt_fragments(lang):
        return ""
    for h in HALLUCINATIONS:
        text = re.sub(re.escape(h) + r"[。.!！]?", "", text, flags=re.IGNORECASE)
    text = _collapse_repeats(text)
    return text.strip() if text.strip(_PUNCT) else ""


def _collapse_repeats(text: str) -> str:
    """Keep one copy of a looped phrase, and drop a cut-off copy right after it."""
    m = _REPEAT.search(text)
    while m:
        unit = m.group(1) or m.group(2)
        rest = text[m.end() :]
        tail = rest.lstrip(" ,，、。.!?")
        if tail and unit.startswith(tail):
            rest = ""
        text = text[: m.start()] + unit + rest
        m = _REPEAT.search(text, m.start() + len(unit))
    return text


def _garbled(text: str, lang: str) -> bool:
    """Empty, the prompt echoed, or looping (a phrase repeated / gzip ratio of Whisper's 2.4)."""
    core = text.strip(_PUNCT)
    if not core:
        return True
    if any(frag in core for frag in _prompt_fragments(lang)):
        return True
    if _REPEAT.search(core):
        return True
    data = core.encode("utf-8")
    return len(data) > 24 and len(data) / len(zlib.compress(data)) > 2.4
