from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from engine.audio import PCM
from engine.errors import ModelError
from engine.ports import Synthesizer
from models.tts.cache import PromptCache, cache_key


class CountingSynth:
    """A fake synthesiser: a tone whose length follows the text; counts calls; can block until released."""

    name = "fake"
    default_voice = "v1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, float]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        self.calls.append((text, voice, speed))
        await self.release.wait()
        n = 800 * max(1, len(text))
        return (np.sin(np.arange(n) / 5.0) * 8000).astype(np.int16)


async def test_second_render_is_a_hit_and_a_wav_exists(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache: Synthesizer = PromptCache(synth, tmp_path)
    first = await cache.render("您好")
    second = await cache.render("您好")
    assert len(synth.calls) == 1
    assert np.array_equal(first, second)
    assert isinstance(cache, PromptCache)
    path = cache.path_for("您好")
    assert path.is_file()
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == len(first)


async def test_disk_cache_survives_a_restart(tmp_path: Path) -> None:
    synth = CountingSynth()
    await PromptCache(synth, tmp_path).render("好的")
    fresh = PromptCache(synth, tmp_path)
    pcm = await fresh.render("好的")
    assert len(synth.calls) == 1
    assert fresh.disk_hits == 1
    assert len(pcm) == 1600


async def test_key_depends_on_voice_speed_engine(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, tmp_path)
    await cache.render("好的")
    await cache.render("好的", voice="v1")  # the default voice: same key
    await cache.render("好的", voice="v2")
    await cache.render("好的", speed=1.2)
    assert len(synth.calls) == 3
    assert cache_key("a", "v", 1.0, "x") != cache_key("a", "v", 1.0, "y")


async def test_concurrent_misses_share_one_synthesis(tmp_path: Path) -> None:
    synth = CountingSynth()
    synth.release.clear()
    cache = PromptCache(synth, tmp_path)
    tasks = [asyncio.create_task(cache.render("请稍等")) for _ in range(5)]
    await asyncio.sleep(0)  # let them all start and queue behind the first
    synth.release.set()
    outs = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert len(synth.calls) == 1
    assert all(np.array_equal(outs[0], o) for o in outs)


async def test_prerender_counts_syntheses_and_dedupes(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, tmp_path)
    assert await cache.prerender(["一", "二", "一"]) == 2
    assert await cache.prerender(["一", "二", "三"]) == 1


async def test_lru_evicts_from_memory_but_disk_still_hits(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, tmp_path, memory_items=2)
    for t in ("一", "二", "三"):
        await cache.render(t)
    await cache.render("一")
    assert len(synth.calls) == 3
    assert cache.disk_hits == 1


async def test_failed_synthesis_is_not_cached(tmp_path: Path) -> None:
    class Failing(CountingSynth):
        async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
            self.calls.append((text, voice, speed))
            raise ModelError("boom")

    synth = Failing()
    cache = PromptCache(synth, tmp_path)
    for _ in range(2):
        with pytest.raises(ModelError):
            await cache.render("x")
    assert len(synth.calls) == 2
    assert cache.misses == 2
    assert not cache.path_for("x").is_file()


async def test_corrupt_cache_file_is_rendered_again(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, tmp_path)
    cache.path_for("坏了").write_bytes(b"garbage")
    pcm = await cache.render("坏了")
    assert len(synth.calls) == 1 and len(pcm) > 0
