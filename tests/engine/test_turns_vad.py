"""Endpointer with a VAD gate and the speculative-transcription pause (pure, scripted frames)."""

from __future__ import annotations

import numpy as np

from engine.audio import FRAME_SAMPLES, PCM
from engine.call.turns import EndpointConfig, Endpointer, SpeechPaused, SpeechStarted, Utterance


def _loud(n: int, seed: int = 0) -> list[PCM]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 3000, FRAME_SAMPLES).astype(np.int16) for _ in range(n)]


def _quiet(n: int) -> list[PCM]:
    return [np.zeros(FRAME_SAMPLES, np.int16) for _ in range(n)]


class ScriptedVad:
    """Says speech for frames whose first sample is odd: the test marks 'speech' frames that way."""

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def probability(self, frame: PCM) -> float:
        self.calls += 1
        return 0.9 if int(frame[0]) % 2 else 0.1

    def reset(self) -> None:
        self.resets += 1


def _mark(frames: list[PCM], speech: bool) -> list[PCM]:
    out = []
    for f in frames:
        g = f.copy()
        g[0] = (int(g[0]) | 1) if speech else (int(g[0]) & ~1)
        out.append(g)
    return out


def _events(ep: Endpointer, frames: list[PCM]) -> list[object]:
    return [ev for f in frames if (ev := ep.feed(f)) is not None]


def test_vad_gate_ignores_loud_non_speech() -> None:
    noise = _mark(_loud(60), speech=False)
    assert any(isinstance(e, SpeechStarted) for e in _events(Endpointer(), noise))  # energy alone: a turn
    vad = ScriptedVad()
    assert _events(Endpointer(vad=vad), noise) == []
    assert vad.calls > 0


def test_vad_gate_passes_speech_and_skips_quiet_frames() -> None:
    vad = ScriptedVad()
    ep = Endpointer(vad=vad)
    evs = _events(ep, _quiet(50) + _mark(_loud(30), speech=True) + _quiet(40))
    assert [type(e) for e in evs] == [SpeechStarted, SpeechPaused, Utterance]
    assert vad.calls <= 30 + 2  # the model ran only while the energy gate was open (+ 2 priming frames)


def test_pause_then_end_gives_the_same_audio() -> None:
    ep = Endpointer(EndpointConfig(speculate_ms=250))
    evs = _events(ep, _quiet(10) + _loud(25) + _quiet(40))
    paused = [e for e in evs if isinstance(e, SpeechPaused)]
    utts = [e for e in evs if isinstance(e, Utterance)]
    assert len(paused) == 1 and len(utts) == 1
    assert np.array_equal(paused[0].pcm, utts[0].pcm) and paused[0].start_s == utts[0].start_s


def test_pause_then_more_speech_gives_a_longer_utterance() -> None:
    ep = Endpointer(EndpointConfig(speculate_ms=250))
    evs = _events(ep, _quiet(10) + _loud(20) + _quiet(15) + _loud(20, seed=1) + _quiet(40))
    paused = [e for e in evs if isinstance(e, SpeechPaused)]
    utts = [e for e in evs if isinstance(e, Utterance)]
    assert len(paused) == 2 and len(utts) == 1
    assert len(paused[0].pcm) < len(utts[0].pcm)
    assert np.array_equal(paused[1].pcm, utts[0].pcm)


def test_no_pause_when_speculation_is_off() -> None:
    ep = Endpointer(EndpointConfig(speculate_ms=None))
    evs = _events(ep, _quiet(10) + _loud(25) + _quiet(40))
    assert [type(e) for e in evs] == [SpeechStarted, Utterance]


def test_end_now_gives_the_utterance_the_end_silence_would_have_given() -> None:
    frames = _quiet(10) + _loud(30) + _quiet(40)

    def run(end_early: bool) -> tuple[Utterance, int]:
        ep = Endpointer(EndpointConfig())
        for i, f in enumerate(frames):
            ev = ep.feed(f)
            if end_early and isinstance(ev, SpeechPaused):
                ended = ep.end_now()
                assert ended is not None and not ep.in_speech
                return ended, i
            if isinstance(ev, Utterance):
                return ev, i
        raise AssertionError("no utterance")

    early, at_early = run(True)
    normal, at_normal = run(False)
    assert np.array_equal(early.pcm, normal.pcm) and early.start_s == normal.start_s
    assert (at_normal - at_early) * 20 == 600 - 260  # end silence minus the speculation pause


def test_end_now_outside_speech_or_before_min_speech_is_none() -> None:
    ep = Endpointer(EndpointConfig())
    assert ep.end_now() is None
    for f in _quiet(5) + _loud(6):  # 120 ms: started (100 ms) but < min_speech_ms 200
        ep.feed(f)
    assert ep.in_speech and ep.end_now() is None and ep.in_speech


def test_complete_replies_are_short_closed_answers_only() -> None:
    from engine.call.turns import is_complete_reply

    yes = ["好的", "嗯，好的", "好的好的", "不 用 了", "不需要。", "可以啊", "对对对"]
    for t in [*yes, "yes", "No thanks.", "uh, sure"]:
        assert is_complete_reply(t), t
    no = ["", "嗯", "好的但是", "多少钱", "不是不需要", "我考虑一下", "不用了但是我想问"]
    for t in [*no, "yes but", "okay so"]:
        assert not is_complete_reply(t), t
