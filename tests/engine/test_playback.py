import asyncio

import numpy as np

from engine.audio import FRAME_SAMPLES
from engine.call.playback import Playout


async def test_play_then_silence_and_handle_done() -> None:
    p = Playout()
    h = p.play(np.ones(FRAME_SAMPLES * 3, np.int16))
    voiced = [p.next_frame()[1] for _ in range(5)]
    assert voiced == [True, True, True, False, False]
    assert h.done and not h.interrupted
    assert await asyncio.wait_for(h.wait(), 1) is True
    assert h.played_s == 0.06


async def test_clear_drops_stale_audio_within_one_frame() -> None:
    p = Playout()
    h1 = p.play(np.ones(FRAME_SAMPLES * 50, np.int16))
    assert p.next_frame()[1] is True
    dropped = p.clear()
    assert dropped == 49
    frame, voiced = p.next_frame()
    assert voiced is False and not frame.any()
    assert h1.interrupted and h1.frames_played == 1
    assert await h1.wait() is False
    h2 = p.play(np.full(FRAME_SAMPLES, 7, np.int16))
    frame, voiced = p.next_frame()
    assert voiced and frame[0] == 7 and h2.done


async def test_pause_resume_keeps_queue() -> None:
    p = Playout()
    p.play(np.arange(FRAME_SAMPLES * 2, dtype=np.int16))
    p.pause()
    assert p.next_frame()[1] is False
    p.resume()
    f, v = p.next_frame()
    assert v and f[0] == 0
    f, v = p.next_frame()
    assert v and f[0] == FRAME_SAMPLES


async def test_interrupt_one_handle_keeps_the_next() -> None:
    p = Playout()
    h1 = p.play(np.ones(FRAME_SAMPLES * 3, np.int16))
    h2 = p.play(np.full(FRAME_SAMPLES, 2, np.int16))
    h1.interrupt()
    f, v = p.next_frame()
    assert v and f[0] == 2
    assert h1.interrupted and h2.done
