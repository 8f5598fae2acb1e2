"""AMD over real SIP/RTP calls (SIPp as the far end).

* ringback and 彩铃 music in early media, then at answer a voicemail greeting in a language the text rules
  do not know (Spanish, espeak-ng) and a beep: the early media is not the callee, the call ends as
  voicemail;
* a carrier announcement in early media, then 480: the session transcribes it before answer."""

from __future__ import annotations

import asyncio
import shutil
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peers import SIPP_DIR, SippServer, tts_wav, write_rtp_pcap

import dialplans
from engine.audio import PCM
from engine.call.session import CallSession, SessionConfig
from engine.dispositions import Disposition
from engine.ports import Transcript
from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent
from tests.engine.fakes import FixedRecognizer, KeywordClassifier, ToneSynth
from tests.fixtures.audio.corpus import read_wav
from tests.fixtures.audio.make_corpus import ringback_music

pytestmark = pytest.mark.e2e

RATE = 8000
SPANISH = "Hola, soy Pedro. Ahora no puedo atender. Deje su mensaje después de la señal."


class UnknownWords:
    """What an ASR would make of the Spanish greeting: words the text rules do not know."""

    name = "fake-asr"

    def __init__(self, leg: SipCallLeg) -> None:
        self.leg = leg
        self.before_answer = 0
        self.calls = 0

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        self.calls += 1
        self.before_answer += self.leg.info.answered_at is None
        return Transcript(text=SPANISH, engine=self.name)


def _write(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(np.round(pcm), -32768, 32767).astype("<i2").tobytes())
    return path


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, 60.0, n)  # line noise, about -55 dBFS


def make_media(work: Path) -> tuple[Path, Path]:
    """early.pcap: 1 s of 450 Hz ringback, 4 s off, 3 s of 彩铃 music; greeting.pcap: 0.3 s, the Spanish
    greeting (~5 s), 0.5 s, a 0.4 s 1400 Hz beep, 3 s of line noise."""
    rng = np.random.default_rng(12)
    t = np.arange(RATE) / RATE
    early = np.concatenate(
        [np.sin(2 * np.pi * 450 * t) * 5000, np.zeros(4 * RATE), ringback_music(3.0).astype(float)]
    )
    early = early + _noise(len(early), rng)
    voice = read_wav(tts_wav(SPANISH, work / "es.wav", voice="es")).astype(float)
    tb = np.arange(round(0.4 * RATE)) / RATE
    greeting = np.concatenate(
        [
            np.zeros(round(0.3 * RATE)),
            voice,
            np.zeros(RATE // 2),
            np.sin(2 * np.pi * 1400 * tb) * 6000,
            np.zeros(3 * RATE),
        ]
    )
    greeting = greeting + _noise(len(greeting), rng)
    return (
        write_rtp_pcap(_write(work / "early.wav", early), work / "early.pcap", payload_type=8),
        write_rtp_pcap(_write(work / "greeting.wav", greeting), work / "greeting.pcap", payload_type=8),
    )


def scenario(work: Path, early: Path, greeting: Path) -> Path:
    """uas_early_media_answer.xml with the pcaps' absolute paths."""
    text = (SIPP_DIR / "uas_early_media_answer.xml").read_text()
    text = text.replace("EARLY_PCAP", str(early)).replace("GREETING_PCAP", str(greeting))
    out = work / "uas_early_media_answer.xml"
    out.write_text(text)
    return out


async def test_foreign_voicemail_greeting_and_beep_after_ringback_is_voicemail(
    ua: UserAgent, sipp_server: Callable[..., SippServer], tmp_path: Path
) -> None:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to make the greeting")
    early, greeting = make_media(tmp_path)
    uas = sipp_server(scenario(tmp_path, early, greeting), timeout_s=40)
    leg = await ua.originate(uas.uri(), caller_id="1001")
    asr = UnknownWords(leg)
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=asr,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        config=SessionConfig(),
    )
    outcome = await asyncio.wait_for(session.run(), 40)
    assert outcome.disposition is Disposition.VOICEMAIL and outcome.hangup_by == "robot"
    assert session.amd is not None and session.amd.pattern.startswith("beep 14"), session.amd
    # the early media was read before answer, and none of it was speech for the recogniser
    report = session.early_media
    assert report is not None and report.ringback >= 1 and report.speech_s == 0.0, report
    assert report.music_s > 0 or report.tone_s > 0, report
    # the recogniser heard the greeting (partials included), nothing before answer
    assert asr.calls >= 1 and asr.before_answer == 0
    uas.wait(15).check()


async def test_announcement_in_early_media_is_transcribed_and_a_specific_final_response_stands(
    ua: UserAgent, sipp_server: Callable[..., SippServer]
) -> None:
    """183 + the announcement over real RTP, then 480 with Q.850 cause 20: the session transcribes the
    early media and the text rules call it UNREACHABLE; cause 20 (subscriber absent) is the more specific
    statement and gives POWERED_OFF."""
    uas = sipp_server("uas_early_media_480.xml", timeout_s=15)
    leg = await ua.originate(uas.uri(), caller_id="1001")
    asr = FixedRecognizer("您拨打的用户暂时无法接通")  # what an ASR makes of the committed pcap
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=asr,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        config=SessionConfig(),
    )
    outcome = await asyncio.wait_for(session.run(), 20)
    assert outcome.disposition is Disposition.POWERED_OFF and outcome.q850_cause == 20
    assert asr.calls >= 1 and session.amd is not None
    assert session.amd.disposition is Disposition.UNREACHABLE
    assert session.early_media is not None and session.early_media.speech_s > 1.0, session.early_media
    uas.wait(10).check()


def _voiced_runs(pcm: np.ndarray, min_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """(start_s, end_s) of stretches louder than -40 dBFS in 20 ms frames, joined across short gaps."""
    n = len(pcm) // 160
    frames = pcm[: n * 160].astype(np.float64).reshape(n, 160)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 32768 * 10 ** (-40 / 20)
    runs: list[tuple[float, float]] = []
    for i in np.flatnonzero(loud):
        t = i * 0.02
        if runs and t - runs[-1][1] <= min_gap_s:
            runs[-1] = (runs[-1][0], t + 0.02)
        else:
            runs.append((t, t + 0.02))
    return runs


async def test_message_left_on_a_real_mailbox_after_its_beep(
    ua: UserAgent, baresip: Callable[..., Any], tmp_path: Path
) -> None:
    """baresip answers with a recorded greeting and beep and records what we send: with the plan's
    `voicemail: leave_message`, our message arrives after the beep, whole, and then we hang up."""
    from tests.engine.test_voicemail_message import LEAVE, plan_with
    from tests.fixtures.audio.corpus import load

    greeting = load("vm_zh", degraded=True)
    delay = 0.5
    beep_end = delay + (len(greeting) - 2400 - 1600) / RATE  # the clip ends 0.5 s after its beep
    callee = baresip(audio=_write(tmp_path / "vm.wav", greeting.astype(float)), delay_s=delay, tail_s=15.0)
    leg = await ua.originate(callee.uri, caller_id="1001")
    synth = ToneSynth()
    session = CallSession(
        leg,
        plan_with(LEAVE),
        recognizer=FixedRecognizer("您好，机主现在不方便接听，请在提示音后留言。"),  # vm_zh, as heard
        classifier=KeywordClassifier(),
        synthesizer=synth,
        config=SessionConfig(),
    )
    outcome = await asyncio.wait_for(session.run(), 40)
    assert outcome.disposition is Disposition.VOICEMAIL and outcome.hangup_by == "robot"
    assert session.voicemail_message == "beep" and "voicemail_message" in outcome.tags
    await callee.wait_event_async("CALL_CLOSED", 10.0)
    heard = read_wav(callee.recording("dec"))
    runs = _voiced_runs(heard)
    message = [r for r in runs if r[0] > beep_end - 0.2]
    assert len(message) == 1, (runs, beep_end)
    start, end = message[0]
    expected = 0.05 * len(synth.rendered[-1]) + 0.2  # ToneSynth's length for the message text
    assert beep_end < start <= beep_end + 1.5, (start, beep_end)
    assert abs((end - start) - expected) <= 0.2, (end - start, expected)
    # nothing of ours overlapped the greeting after the decision: the greeting prompt was cut
    assert all(r[1] <= beep_end for r in runs if r is not message[0])
