"""Kokoro-82M v1.0 (int8 ONNX) synthesiser: Mandarin and English, 8 kHz telephone PCM out.

Files (assembled by `python -m models.install`, default var/models/kokoro):
    kokoro-v1.0.int8.onnx, vocab.json, voices/<voice>.bin (raw float32, N x 1 x 256)

Text -> normalise (models.tts.normalize) -> phonemes (misaki ZHG2P for `z*` voices, a lexicon G2P for
English voices, see en_g2p) -> tokens (vocab) -> ONNX (style = voice[len(tokens) - 1]) -> 24 kHz float
-> anti-aliased resample to 8 kHz int16.

One onnxruntime session per process, run in ONE dedicated worker thread so the event loop never blocks
and concurrent renders queue instead of fighting for the cores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio import PCM, SAMPLE_RATE
from engine.errors import ModelError
from models.dsp import float_to_pcm, resample_float
from models.paths import ENV_KOKORO_DIR, MAKE_MODELS, kokoro_dir
from models.tts.normalize import normalize

log = logging.getLogger(__name__)

MODEL_NAME = "kokoro-v1.0.int8.onnx"
KOKORO_RATE = 24000
MAX_TOKENS = 510  # context 512 minus the two pad tokens
DEFAULT_VOICE = "zm_yunjian"
_SENTENCE = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)\s+")
_CLAUSE = re.compile(r"(?<=[，,、：:])")


def voice_language(voice: str) -> str:
    """Kokoro voice prefix -> language: z* Mandarin, a*/b* English; others unsupported here."""
    if voice.startswith("z"):
        return "zh"
    if voice[:1] in ("a", "b"):
        return "en"
    raise ModelError(
        f"Kokoro voice {voice!r} is neither Mandarin (z*) nor English (a*/b*)",
        hint="use zm_yunjian, zm_yunxi, zf_xiaobei or af_heart",
    )


class KokoroSynthesizer:
    """engine.ports.Synthesizer on Kokoro. Construction loads the model (about 1.5 s): do it at start-up.

    Args:
        model_dir: folder with kokoro-v1.0.int8.onnx, vocab.json, voices/ (default: $OUTCALL_KOKORO_DIR
            or var/models/kokoro).
        voice: default voice (zm_yunjian: the clearest Mandarin voice over 8 kHz).
        threads: onnxruntime intra-op threads.
        sentence_pause: seconds of silence between sentences.
    """

    name = "kokoro"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        voice: str = DEFAULT_VOICE,
        threads: int = 2,
        sentence_pause: float = 0.25,
        out_rate: int = SAMPLE_RATE,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else kokoro_dir()
        self.default_voice = voice
        self.sentence_pause = sentence_pause
        self.out_rate = out_rate
        self._voices: dict[str, npt.NDArray[np.float32]] = {}
        self._g2p_lock = threading.Lock()
        self._zh_g2p: Any = None
        self._en_g2p: Any = None
        self.stats: dict[str, float] = {"renders": 0, "audio_s": 0.0, "compute_s": 0.0}
        t0 = time.perf_counter()
        self._session = self._load_session(threads)
        self._vocab = self._load_vocab()
        voice_language(voice)
        self._voice(voice)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoro")
        self.load_s = time.perf_counter() - t0

    # --- loading -------------------------------------------------------------------------------------

    def _missing(self, what: str) -> ModelError:
        return ModelError(
            f"Kokoro {what} not found in {self.model_dir}",
            hint=f"run `{MAKE_MODELS}` (python -m models.install) or set {ENV_KOKORO_DIR} to the folder "
            f"holding {MODEL_NAME}, vocab.json and voices/",
        )

    def _load_session(self, threads: int) -> Any:
        path = self.model_dir / MODEL_NAME
        if not path.is_file():
            raise self._missing(f"model {MODEL_NAME}")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("onnxruntime is not installed", hint="pip install -e '.[speech]'") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"Kokoro model {path} is corrupt or unreadable: {exc}",
                hint=f"delete it and run `{MAKE_MODELS}` again",
            ) from exc

    def _load_vocab(self) -> dict[str, int]:
        path = self.model_dir / "vocab.json"
        if not path.is_file():
            raise self._missing("vocab.json")
        vocab = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): int(v) for k, v in vocab["vocab"].items()}

    def _voice(self, voice: str) -> npt.NDArray[np.float32]:
        style = self._voices.get(voice)
        if style is not None:
            return style
        path = self.model_dir / "voices" / f"{voice}.bin"
        if not path.is_file():
            have = sorted(p.stem for p in (self.model_dir / "voices").glob("*.bin"))
            raise ModelError(f"Kokoro voice {voice!r} not found at {path}", hint=f"available: {have}")
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size == 0 or raw.size % 256:
            raise ModelError(f"Kokoro voice file {path} is malformed", hint=f"run `{MAKE_MODELS}` again")
        style = raw.reshape(-1, 256)
        self._voices[voice] = style
        return style

    def _g2p(self, language: str) -> Any:
        with self._g2p_lock:
            if language == "zh":
                if self._zh_g2p is None:
                    import jieba
                    from misaki import zh

                    jieba.setLogLevel(logging.WARNING)
                    jieba.initialize()
                    self._zh_g2p = zh.ZHG2P()
                return self._zh_g2p
            if self._en_g2p is None:
                from models.tts.en_g2p import EnglishG2P

                g2p = EnglishG2P()
                _ = g2p.lexicon
                self._en_g2p = g2p
            return self._en_g2p

    def warm(self, languages: tuple[str, ...] = ("zh",)) -> None:
        """Load the G2P front ends (jieba's dictionary: ~0.6 s) and run one tiny inference. Blocking."""
        for lang in languages:
            self._g2p(lang)
        self.synthesize_sync("好的。" if "zh" in languages else "Okay.")

    async def start(self, languages: tuple[str, ...] = ("zh",)) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.warm, languages)

    # --- synthesis -----------------------------------------------------------------------------------

    def phonemize(self, text: str, language: str) -> str:
        g2p = self._g2p(language)
        if language == "zh":
            phonemes, _ = g2p(text)
            return str(phonemes)
        return str(g2p(text))

    def _tokens(self, phonemes: str) -> list[int]:
        return [self._vocab[c] for c in phonemes if c in self._vocab]

    def _chunks(self, text: str, language: str) -> list[list[int]]:
        """Sentences (then clauses) whose token count fits the model."""
        out: list[list[int]] = []
        for sentence in (s.strip() for s in _SENTENCE.split(text)):
            if not sentence:
                continue
            tokens = self._tokens(self.phonemize(sentence, language))
            if len(tokens) <= MAX_TOKENS:
                if tokens:
                    out.append(tokens)
                continue
            cur: list[int] = []
            for clause in _CLAUSE.split(sentence):
                ct = self._tokens(self.phonemize(clause, language))[:MAX_TOKENS]
                if cur and len(cur) + len(ct) + 1 > MAX_TOKENS:
                    out.append(cur)
                    cur = []
                cur = [*cur, self._vocab[" "], *ct] if cur else ct
            if cur:
                out.append(cur)
        return out

    def _infer(
        self, tokens: list[int], style: npt.NDArray[np.float32], speed: float
    ) -> npt.NDArray[np.float32]:
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
        audio = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": np.ascontiguousarray(ref, dtype=np.float32),
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        trimmed: npt.NDArray[np.float32] = _trim(np.asarray(audio, dtype=np.float32).ravel())
        return trimmed

    def synthesize_float(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> npt.NDArray[np.float32]:
        """24 kHz float audio for text. Blocking: call from the worker (render()) or a script."""
        voice = voice or self.default_voice
        language = voice_language(voice)
        style = self._voice(voice)
        if not 0.5 <= speed <= 2.0:
            raise ModelError(f"Kokoro speed {speed} out of range", hint="use 0.5 .. 2.0")
        chunks = self._chunks(normalize(text, language), language)
        gap = np.zeros(int(self.sentence_pause * KOKORO_RATE), dtype=np.float32)
        pieces: list[npt.NDArray[np.float32]] = []
        for i, tokens in enumerate(chunks):
            if i:
                pieces.append(gap)
            pieces.append(self._infer(tokens, style, speed))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def synthesize_sync(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        t0 = time.perf_counter()
        audio = self.synthesize_float(text, voice=voice, speed=speed)
        pcm = float_to_pcm(resample_float(audio, KOKORO_RATE, self.out_rate))
        self.stats["renders"] += 1
        self.stats["audio_s"] += len(audio) / KOKORO_RATE
        self.stats["compute_s"] += time.perf_counter() - t0
        return pcm

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        """8 kHz mono int16 PCM; runs in the synthesiser's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.synthesize_sync(text, voice=voice, speed=speed)
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _trim(audio: npt.NDArray[np.float32], thresh: float = 0.01, pad: int = int(0.03 * KOKORO_RATE)) -> Any:
    idx = np.flatnonzero(np.abs(audio) > thresh)
    if len(idx) == 0:
        return audio
    return audio[max(0, int(idx[0]) - pad) : int(idx[-1]) + pad]
