"""The beep detector on generated tones (noise, µ-law, clipping) and on everything that must not be a beep:
every corpus clip, DTMF as the gateway's Goertzel detector sees it, ringback and music."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import PCM, frames_of, ulaw_decode, ulaw_encode
from engine.call.beep import ToneConfig, ToneDetector, ToneEvent
from engine.dtmf import COL_FREQS, KEYPAD, ROW_FREQS, GoertzelDetector
from gateway.rtp.dtmf import tone
from tests.fixtures.audio.corpus import labels, load
from tests.fixtures.audio.make_corpus import BEEP_AFTER

RATE = 8000


def events(pcm: PCM) -> list[ToneEvent]:
    det = ToneDetector()
    out = []
    for f in frames_of(np.concatenate([pcm, np.zeros(800, np.int16)])):
        ev = det.feed(f)
        if ev is not None:
            out.append(ev)
    return out


def beeps(pcm: PCM) -> list[ToneEvent]:
    return [e for e in events(pcm) if e.kind == "beep"]


def sine(hz: float, seconds: float, amp: float = 8000.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.asarray(amp * np.sin(2 * np.pi * hz * t + phase), dtype=np.float64)


def line(x: np.ndarray, *, snr_db: float | None, rng: np.random.Generator, signal_power: float) -> PCM:
    """White line noise at `snr_db` below `signal_power` (mean square of the tone), through µ-law."""
    if snr_db is not None:
        x = x + rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(x))
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


@pytest.mark.parametrize("hz", [400.0, 620.0, 850.0, 1000.0, 1400.0, 1750.0, 2000.0])
@pytest.mark.parametrize("seconds", [0.15, 0.3, 0.5, 1.0, 1.5])
def test_beeps_found_in_noise_through_ulaw(hz: float, seconds: float) -> None:
    rng = np.random.default_rng(int(hz * 10 + seconds * 100))
    for snr in (10.0, 15.0, 20.0, None):
        lead = rng.uniform(0.2, 0.6)  # the beep starts anywhere in a frame
        amp = rng.uniform(2000, 16000)
        x = np.concatenate([np.zeros(round(lead * RATE)), sine(hz, seconds, amp, rng.uniform(0, 6.3))])
        x = np.concatenate([x, np.zeros(RATE // 2)])
        found = beeps(line(x, snr_db=snr, rng=rng, signal_power=amp**2 / 2))
        assert len(found) == 1, (
            hz,
            seconds,
            snr,
            events(line(x, snr_db=snr, rng=rng, signal_power=amp**2 / 2)),
        )
        b = found[0]
        assert abs(b.hz - hz) <= 5.0
        assert abs(b.start_s - lead) <= 0.04
        assert abs(b.duration_s - seconds) <= 0.06


def test_clipped_beep_is_still_a_beep() -> None:
    """Gain into clipping adds harmonics (3f, 5f, folded at 4 kHz): they are not a second tone."""
    for hz in (850.0, 1000.0, 1400.0):
        x = np.concatenate([np.zeros(2000), sine(hz, 0.5, 60000.0), np.zeros(4000)])
        assert [
            round(b.hz) for b in beeps(line(x, snr_db=None, rng=np.random.default_rng(0), signal_power=1))
        ] == [round(hz)]


def test_too_short_too_long_and_out_of_band_tones_are_not_beeps() -> None:
    rng = np.random.default_rng(5)
    for hz, seconds in ((1000.0, 0.08), (1000.0, 2.5), (300.0, 0.5), (2600.0, 0.5)):
        x = np.concatenate([np.zeros(2000), sine(hz, seconds), np.zeros(4000)])
        assert beeps(line(x, snr_db=15.0, rng=rng, signal_power=8000.0**2 / 2)) == [], (hz, seconds)


def test_a_beep_fading_into_continuing_sound_is_not_a_beep() -> None:
    """A voicemail beep is followed by the recording's silence; a tone running into other sound is not."""
    rng = np.random.default_rng(6)
    x = np.concatenate([np.zeros(2000), sine(1000.0, 0.5), rng.normal(0, 5000, 8000)])
    assert beeps(line(x, snr_db=None, rng=rng, signal_power=1.0)) == []


def test_every_corpus_clip_has_exactly_its_beeps() -> None:
    """Speech, announcements, backchannels, music, coughs, noise (clean and degraded): no beep; the two
    voicemail greetings end with their one 1000 Hz beep."""
    checked = 0
    for clip in labels():
        for degraded in (False, True):
            found = beeps(load(clip["id"], degraded=degraded))
            want = 1 if clip["id"] in BEEP_AFTER else 0
            assert len(found) == want, (clip["id"], degraded, found)
            if want:
                assert abs(found[0].hz - 1000.0) < 5 and abs(found[0].duration_s - 0.5) < 0.06
            checked += 1
    assert checked == 2 * len(labels()) >= 50


def dtmf(digit: str, seconds: float, twist_db: float) -> np.ndarray:
    r, c = next((r, row.index(digit)) for r, row in enumerate(KEYPAD) if digit in row)
    low = sine(ROW_FREQS[r], seconds, 6000.0)
    high = sine(COL_FREQS[c], seconds, 6000.0 * 10 ** (twist_db / 20))
    both: np.ndarray = low + high
    return both


@pytest.mark.parametrize("twist_db", [-7.0, -4.0, 0.0, 4.0, 7.0])
def test_dtmf_is_not_a_beep(twist_db: float) -> None:
    """All 16 digits, short and long presses, twist up to near the 8 dB the gateway's Goertzel accepts."""
    rng = np.random.default_rng(7)
    goertzel = GoertzelDetector()
    recognised = 0
    for digit in "0123456789*#ABCD":
        for seconds in (0.1, 0.3, 1.0):
            x = np.concatenate([np.zeros(2000), dtmf(digit, seconds, twist_db), np.zeros(4000)])
            pcm = line(x, snr_db=20.0, rng=rng, signal_power=6000.0**2)
            # DTMF to the gateway's in-band detector ...
            got = goertzel.classify(pcm[2000 + 160 : 2000 + 320])
            assert got in (digit, None)
            recognised += got == digit
            # ... and no beep to ours
            assert beeps(pcm) == [], (digit, seconds, twist_db)
    assert recognised >= (48 if abs(twist_db) <= 4 else 36)
    # the gateway's own tone synthesis too
    assert beeps(tone("5", 800, level_dbfs=-12.0)) == []


def ringback(
    cycles: int, on_s: float = 1.0, off_s: float = 4.0, hz: tuple[float, ...] = (450.0,)
) -> np.ndarray:
    on = sum(sine(f, on_s, 7000.0 / len(hz)) for f in hz)
    return np.concatenate([np.concatenate([on, np.zeros(round(off_s * RATE))]) for _ in range(cycles)])


def test_chinese_ringback_is_classified_ringback_not_beep() -> None:
    rng = np.random.default_rng(8)
    for snr in (10.0, 20.0, None):
        evs = events(line(ringback(3), snr_db=snr, rng=rng, signal_power=7000.0**2 / 2))
        assert [e.kind for e in evs] == ["ringback"] * 3, (snr, evs)
        assert all(abs(e.hz - 450) < 5 and abs(e.duration_s - 1.0) < 0.06 for e in evs)


def test_us_ringback_is_not_a_beep() -> None:
    """440 + 480 Hz, 2 s on / 4 s off."""
    rng = np.random.default_rng(9)
    x = ringback(2, on_s=2.0, hz=(440.0, 480.0))
    assert beeps(line(x, snr_db=20.0, rng=rng, signal_power=3500.0**2)) == []


def melody(rng: np.random.Generator, *, harmonics: bool, decay: float, notes: int = 16) -> np.ndarray:
    """Notes back to back (a tune): pure or with harmonics, flat or decaying (plucked/piano-like)."""
    scale = [523.3, 587.3, 659.3, 698.5, 784.0, 880.0, 987.8, 1046.5]
    out = []
    for _ in range(notes):
        f = float(rng.choice(scale))
        seconds = float(rng.choice([0.2, 0.3, 0.4, 0.6]))
        t = np.arange(round(seconds * RATE)) / RATE
        ks = (1, 2, 3, 4) if harmonics else (1,)
        x = sum(np.sin(2 * np.pi * f * k * t) / k for k in ks)
        out.append(8000.0 * np.asarray(x) * np.exp(-decay * t))
    return np.concatenate(out)


def test_music_is_not_a_beep() -> None:
    """No note of a tune is a beep: the next note follows without the drop a beep's silence gives, and
    notes with harmonics or a decaying envelope are not one flat sine. (A tune of flat pure sines whose
    last note is followed by silence ends with what is physically a beep: the session only acts on a beep
    that follows a greeting longer than a human's.)"""
    rng = np.random.default_rng(10)
    for harmonics in (True, False):
        for decay in (0.0, 3.0, 8.0):
            for snr in (15.0, None):
                x = melody(rng, harmonics=harmonics, decay=decay)
                found = beeps(line(x, snr_db=snr, rng=rng, signal_power=8000.0**2 / 2))
                before_last_note = [b for b in found if b.end_s < len(x) / RATE - 0.1]
                assert before_last_note == [], (harmonics, decay, snr, found)
                if harmonics or decay > 3.0:
                    assert found == [], (harmonics, decay, snr, found)


def test_dtmf_frames_are_never_tonal_even_without_the_two_tone_rule() -> None:
    """The beep detector asks the in-band DTMF detector (engine.dtmf, the gateway's) about each frame:
    with the second-peak rule switched off, a long DTMF press at 7 dB twist is still no tone."""
    lax = ToneConfig(two_tone_share=1.0)
    for digit in "159D":
        x = np.concatenate([np.zeros(800), dtmf(digit, 0.6, 7.0), np.zeros(2400)])
        pcm = np.round(x).astype(np.int16)
        det = ToneDetector(lax)
        found = [e for f in frames_of(pcm) if (e := det.feed(f)) is not None]
        assert found == [], (digit, found)
