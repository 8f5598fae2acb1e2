"""Prompt cache: render each (text, voice, speed, engine) once, keep it as an 8 kHz WAV, serve it from memory.

    cache = PromptCache(KokoroSynthesizer(), "var/models/cache")
    await cache.prerender(["您好，我是…", "好的，再见。"])   # at start-up, for the dialplan's static prompts
    pcm = await cache.render("好的，再见。")                  # hit: no synthesis

Key: sha256 over engine name, voice, speed and text; file DEST/cache/<key>.wav (mono, 16-bit, 8 kHz).
An in-memory LRU sits on top. A miss synthesises through the wrapped synthesiser (which runs in its own
worker) and writes the file in an executor, so nothing blocks the loop. Concurrent misses of one key
share a single synthesis.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import wave
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.audio import PCM, SAMPLE_RATE
from engine.errors import ModelError
from engine.ports import Synthesizer

log = logging.getLogger(__name__)


def cache_key(text: str, voice: str, speed: float, engine: str) -> str:
    blob = json.dumps([engine, voice, round(speed, 3), text], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def write_wav(path: Path, pcm: PCM, rate: int = SAMPLE_RATE) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    tmp.replace(path)


def read_wav(path: Path) -> PCM:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SAMPLE_RATE:
            raise ModelError(f"cached prompt {path} is not 8 kHz mono 16-bit", hint="delete it")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


class PromptCache:
    """A Synthesizer that caches another one. Args: synth, cache_dir, memory_items (LRU size)."""

    def __init__(self, synth: Synthesizer, cache_dir: Path | str, *, memory_items: int = 512) -> None:
        self.synth = synth
        self.name = f"cache:{synth.name}"
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.memory_items = memory_items
        self._memory: OrderedDict[str, PCM] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[PCM]] = {}
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def _voice(self, voice: str | None) -> str:
        return voice or str(getattr(self.synth, "default_voice", "") or "")

    def key(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> str:
        return cache_key(text, self._voice(voice), speed, self.synth.name)

    def path_for(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> Path:
        return self.cache_dir / f"{self.key(text, voice=voice, speed=speed)}.wav"

    def _remember(self, key: str, pcm: PCM) -> None:
        self._memory[key] = pcm
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        key = self.key(text, voice=voice, speed=speed)
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
            self.hits += 1
            return pcm
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[PCM] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            pcm = await self._load_or_render(key, text, voice, speed)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters (if any) re-raise it
            raise
        else:
            fut.set_result(pcm)
            self._remember(key, pcm)
            return pcm
        finally:
            del self._inflight[key]

    async def _load_or_render(self, key: str, text: str, voice: str | None, speed: float) -> PCM:
        loop = asyncio.get_running_loop()
        path = self.cache_dir / f"{key}.wav"
        if path.is_file():
            try:
                pcm = await loop.run_in_executor(None, read_wav, path)
            except (OSError, EOFError, wave.Error, ModelError):
                log.warning("cached prompt %s unreadable; rendering again", path)
            else:
                self.disk_hits += 1
                return pcm
        self.misses += 1
        pcm = await self.synth.render(text, voice=voice, speed=speed)
        await loop.run_in_executor(None, write_wav, path, pcm)
        return pcm

    async def prerender(self, texts: Iterable[str], *, voice: str | None = None, speed: float = 1.0) -> int:
        """Render (or load) every text once; returns how many needed synthesis."""
        before = self.misses
        for text in dict.fromkeys(texts):
            await self.render(text, voice=voice, speed=speed)
        return self.misses - before
