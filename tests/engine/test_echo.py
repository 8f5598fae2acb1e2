"""The echo guard on real (espeak-ng) speech: our prompt echoed back never looks like the callee, while the
callee talking over the prompt still does. Scripted frames through the real Playout, guard and Endpointer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from engine.audio import FRAME_SAMPLES, PCM, frames_of, ulaw_decode, ulaw_encode
from engine.call.echo import EchoGuard
from engine.call.playback import Playout
from engine.call.turns import Endpointer, SpeechStarted
from tests.speech_audio import speech

PROMPT = "Hello, this is Anna from the city clinic. I am calling about your appointment tomorrow at ten."
CALLEE = "Wait a moment, I am not interested, please stop."
HYBRID = np.array([0.0, 0.55, 0.3, -0.12, 0.05])  # a line hybrid smears the echo over a few samples


def line(
    prompt: PCM,
    *,
    delay_ms: int,
    gain_db: float,
    callee: PCM | None = None,
    callee_at_s: float = 0.0,
    hybrid: bool = False,
    noise_dbfs: float = -62.0,
    tail_s: float = 1.0,
) -> list[PCM]:
    """What we receive while playing `prompt`: its echo, the callee, line noise, through µ-law."""
    out = np.concatenate(frames_of(prompt)).astype(np.float64)
    n = len(out) + int(tail_s * 8000)
    sent = np.zeros(n)
    sent[: len(out)] = out
    if hybrid:
        sent = np.convolve(sent, HYBRID)[:n]
    d = int(delay_ms * 8)
    rx = np.zeros(n)
    rx[d:] = sent[: n - d] * 10 ** (gain_db / 20)
    if callee is not None:
        at = int(callee_at_s * 8000)
        seg = callee[: n - at].astype(np.float64)
        rx[at : at + len(seg)] += seg
    rng = np.random.default_rng(7)
    rx += rng.normal(0, 32768 * 10 ** (noise_dbfs / 20), n)
    pcm = np.clip(np.round(rx), -32768, 32767).astype(np.int16)
    pcm = ulaw_decode(ulaw_encode(pcm))
    return frames_of(pcm)


@dataclass
class Run:
    onsets: list[float]
    guard: EchoGuard


def run(prompt: PCM, inbound: list[PCM], *, guarded: bool = True) -> Run:
    """Tick by tick as the gateway does it: send one frame, then hear one frame."""
    playout = Playout()
    playout.play(prompt)
    guard = EchoGuard()
    ep = Endpointer()
    onsets = []
    for frame in inbound:
        playout.next_frame()
        if guarded:
            guard.sync(playout)
            frame = guard.process(frame)
        ev = ep.feed(frame)
        if isinstance(ev, SpeechStarted):
            onsets.append(ev.offset_s)
    return Run(onsets, guard)


@pytest.fixture(scope="module")
def prompt() -> PCM:
    return speech(PROMPT, level_dbfs=-18.0)


@pytest.fixture(scope="module")
def callee() -> PCM:
    return speech(CALLEE, voice="en-us+f3", wpm=170, level_dbfs=-24.0)


def first_voiced_s(pcm: PCM) -> float:
    idx = np.flatnonzero(np.abs(pcm) > 300)
    return float(idx[0]) / 8000 if len(idx) else 0.0


def test_unguarded_echo_is_heard_as_speech(prompt: PCM) -> None:
    """The problem the guard solves: a -6 dB echo trips the endpointer without it."""
    r = run(prompt, line(prompt, delay_ms=150, gain_db=-6), guarded=False)
    assert r.onsets


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("delay_ms", [50, 150, 300])
@pytest.mark.parametrize("gain_db", [-6.0, -15.0, -30.0])
def test_echo_alone_never_starts_speech(prompt: PCM, delay_ms: int, gain_db: float, hybrid: bool) -> None:
    r = run(prompt, line(prompt, delay_ms=delay_ms, gain_db=gain_db, hybrid=hybrid))
    assert r.onsets == [], f"false onsets {r.onsets} (stats {r.guard.stats})"
    if gain_db > -30:
        assert r.guard.delay is not None
        assert abs(r.guard.delay - delay_ms * 8) <= 8  # the delay found to within 1 ms


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("delay_ms", [50, 300])
def test_callee_over_the_echoing_prompt_still_barges_in(
    prompt: PCM, callee: PCM, delay_ms: int, hybrid: bool
) -> None:
    at = 1.5
    inbound = line(prompt, delay_ms=delay_ms, gain_db=-6, callee=callee, callee_at_s=at, hybrid=hybrid)
    r = run(prompt, inbound)
    assert r.onsets, f"callee not heard (stats {r.guard.stats})"
    onset = at + first_voiced_s(callee)
    assert all(t >= onset - 0.05 for t in r.onsets), r.onsets  # nothing before the callee spoke
    assert r.onsets[0] - onset <= 0.3, (r.onsets, onset)


def test_callee_without_any_echo_is_untouched(prompt: PCM, callee: PCM) -> None:
    inbound = line(prompt, delay_ms=100, gain_db=-80, callee=callee, callee_at_s=1.0)
    r = run(prompt, inbound)
    assert r.onsets and r.onsets[0] - (1.0 + first_voiced_s(callee)) <= 0.2
    assert r.guard.stats.suppressed == 0


def test_reader_lagging_behind_the_playout_keeps_alignment(prompt: PCM) -> None:
    """Inbound frames read in bursts (the loop was busy): the tick index, not wall time, aligns them."""
    inbound = line(prompt, delay_ms=120, gain_db=-6)
    playout = Playout()
    playout.play(prompt)
    guard, ep = EchoGuard(), Endpointer()
    onsets = []
    sent = 0
    for i, frame in enumerate(inbound):
        while sent <= i + (i // 25) % 3:  # the reader runs 0..2 frames behind the sender
            playout.next_frame()
            sent += 1
        guard.sync(playout)
        ev = ep.feed(guard.process(frame))
        if isinstance(ev, SpeechStarted):
            onsets.append(ev.offset_s)
    assert onsets == [], guard.stats


def jumping_echo(prompt: PCM, delays_ms: list[tuple[float, int]], gain_db: float = 0.0) -> list[PCM]:
    """A full-level echo (SIPp's rtp_echo, an echoing softphone) whose delay jumps at the given times,
    as when a jitter buffer on the way adapts mid-prompt."""
    sent = np.concatenate(frames_of(prompt)).astype(np.float64)
    n = len(sent) + 8000
    sent = np.concatenate([sent, np.zeros(n - len(sent))])
    rx = np.zeros(n)
    bounds = [int(t * 8000) for t, _ in delays_ms] + [n]
    for (_, d_ms), lo, hi in zip(delays_ms, bounds, bounds[1:], strict=False):
        d = d_ms * 8
        idx = np.arange(lo, hi)
        ok = idx >= d
        rx[idx[ok]] = sent[idx[ok] - d] * 10 ** (gain_db / 20)
    rx += np.random.default_rng(3).normal(0, 32768 * 10 ** (-62 / 20), n)
    return frames_of(ulaw_decode(ulaw_encode(np.clip(np.round(rx), -32768, 32767).astype(np.int16))))


def random_walk_delays(rng: np.random.Generator) -> list[tuple[float, int]]:
    """An echo delay that moves by up to 25 ms every 0.1-1 s (a jitter buffer adapting under load)."""
    t, d = 0.0, int(rng.integers(30, 120))
    out = [(0.0, d)]
    while t < 5.0:
        t += float(rng.uniform(0.1, 1.0))
        d = int(np.clip(d + rng.integers(-25, 26), 20, 200))
        out.append((round(t, 2), d))
    return out


def test_full_level_echo_whose_delay_moves_rarely_starts_speech(prompt: PCM) -> None:
    """Between two checks of the echo path the lock can be a few ms off: what the subtraction leaves is
    still our prompt (correlated with it at the new delay) and is not taken for the callee. 30 lines
    whose 0 dB echo path moves every 0.1-1 s: without that check 25 of them barge in on themselves."""
    rng = np.random.default_rng(1)
    false = [
        p for p in (random_walk_delays(rng) for _ in range(30)) if run(prompt, jumping_echo(prompt, p)).onsets
    ]
    assert len(false) <= 8, false


def test_guard_is_cheap_per_frame(prompt: PCM) -> None:
    import time

    inbound = line(prompt, delay_ms=150, gain_db=-6)
    t0 = time.process_time()
    r = run(prompt, inbound)
    per_frame_ms = (time.process_time() - t0) / len(inbound) * 1000
    assert r.guard.stats.estimates < len(inbound) / 3
    assert per_frame_ms < 2.0  # a 2-core box under test load; measured ~0.1 ms on a quiet one
    assert FRAME_SAMPLES == 160
