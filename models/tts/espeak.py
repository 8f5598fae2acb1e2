"""espeak-ng synthesiser: the always-available fallback (robotic; `cmn` is hard to understand).

Runs `espeak-ng --stdout` as an asyncio subprocess (never blocks the loop), parses the WAV it writes and
resamples to 8 kHz int16.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess

import numpy as np

from engine.audio import PCM, SAMPLE_RATE
from engine.errors import ModelError
from models.dsp import resample_pcm
from models.tts.normalize import normalize


def parse_wav(data: bytes) -> tuple[PCM, int]:
    """Mono 16-bit PCM WAV -> (samples, rate). Tolerates the unknown-length header espeak writes to a pipe."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ModelError("espeak-ng did not produce a WAV stream")
    pos, rate, channels, bits = 12, 0, 1, 16
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate, _br, _ba, bits = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            end = len(data) if size in (0, 0xFFFFFFFF, 0x7FFFFFFF) or body + size > len(data) else body + size
            raw = data[body:end]
            raw = raw[: len(raw) // 2 * 2]
            if bits != 16 or rate == 0:
                raise ModelError(f"espeak-ng wrote unsupported WAV ({bits}-bit, {rate} Hz)")
            samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
            if channels > 1:
                samples = samples.reshape(-1, channels)[:, 0].copy()
            return samples, int(rate)
        pos = body + size + (size & 1)
    raise ModelError("espeak-ng WAV has no data chunk")


def _list_voices(binary: str) -> set[str]:
    """Language codes, voice names and file names `espeak-ng --voices` knows (lower case)."""
    try:
        out = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update(
                {cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit("/", 1)[-1].lower()}
            )
    return names


class EspeakSynthesizer:
    """engine.ports.Synthesizer on the espeak-ng binary.

    Args:
        voice: espeak voice (`cmn` Mandarin, `en-us` English); the language for normalisation follows it.
        rate: words per minute.
        binary: program name or path.
    """

    name = "espeak-ng"

    def __init__(self, voice: str = "cmn", *, rate: int = 160, binary: str = "espeak-ng") -> None:
        path = shutil.which(binary)
        if path is None:
            raise ModelError(f"{binary} is not installed", hint="apt-get install espeak-ng")
        self.binary = path
        self.voices = _list_voices(path)
        self.default_voice = self._check_voice(voice)
        self.rate = rate

    def _check_voice(self, voice: str) -> str:
        # espeak-ng silently falls back to its default voice on an unknown name, so check it here
        if self.voices and voice.split("+", 1)[0].lower() not in self.voices:
            raise ModelError(
                f"espeak-ng has no voice {voice!r}",
                hint="pick one from `espeak-ng --voices` (e.g. cmn, en-us)",
            )
        return voice

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        voice = self._check_voice(voice or self.default_voice)
        language = "zh" if voice.startswith(("cmn", "zh", "yue")) else "en"
        text = normalize(text, language)
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-v",
            voice,
            "-s",
            str(round(self.rate * speed)),
            "--stdout",
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ModelError(
                f"espeak-ng failed (rc={proc.returncode}, voice {voice!r}): "
                f"{err.decode(errors='replace')[-300:]}",
                hint="check the voice name with `espeak-ng --voices`",
            )
        samples, rate = parse_wav(out)
        return resample_pcm(samples, rate, SAMPLE_RATE)
