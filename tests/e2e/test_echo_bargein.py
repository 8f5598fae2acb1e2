"""Barge-in against a real echoing line: our UA dials SIPp's UAS with -rtp_echo, which returns every RTP
packet we send. Our own prompts come back over real RTP (jitter buffer included) and must never be taken
for the callee; without the echo guard the same call barges in on itself."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import pytest
from peers import SippServer

import dialplans
from engine.audio import PCM
from engine.call.session import CallSession, SessionConfig
from engine.outcome import CallOutcome
from gateway.sip.ua import UserAgent
from models.nlu.rules import RulesClassifier
from models.tts.espeak import EspeakSynthesizer
from tests.engine.fakes import FixedRecognizer

pytestmark = pytest.mark.e2e


class EnglishEspeak:
    """The real espeak-ng adapter with its English voice (the plan names a Kokoro voice)."""

    name = "espeak-ng"

    def __init__(self) -> None:
        self.inner = EspeakSynthesizer(voice="en-us")

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        return await self.inner.render(text, speed=speed)


async def _call(
    ua: UserAgent, uas: SippServer, *, guard: bool
) -> tuple[CallSession, CallOutcome, FixedRecognizer]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    leg = await ua.originate(uas.uri(), caller_id="1001")
    rec = FixedRecognizer("no, I am not interested")  # counts what reaches ASR
    session = CallSession(
        leg,
        dialplans.get("trial-class-en"),
        recognizer=rec,
        classifier=RulesClassifier(),
        synthesizer=EnglishEspeak(),
        config=SessionConfig() if guard else SessionConfig(echo=None),
    )
    outcome = await asyncio.wait_for(session.run(), 60)
    return session, outcome, rec


async def test_sipp_rtp_echo_causes_no_false_barge_in(
    ua: UserAgent, sipp_server: Callable[..., SippServer]
) -> None:
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=60)
    session, o, rec = await _call(ua, uas, guard=True)
    bot = [t for t in o.turns if t.speaker == "bot"]
    assert len(bot) >= 3, o.turns  # disclosure, greeting, re-prompt (no answer: the line only echoes)
    assert not any(t.interrupted for t in bot), o.turns
    assert [t for t in o.turns if t.speaker == "callee"] == []
    assert rec.calls == 0
    g = session.echo_guard
    assert g is not None
    assert g.stats.locks >= 1 and g.stats.suppressed > 50, g.stats  # the echo was there, and removed
    uas.wait(15).check()


async def test_without_the_guard_sipp_echo_barges_in(
    ua: UserAgent, sipp_server: Callable[..., SippServer]
) -> None:
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=60)
    _, o, rec = await _call(ua, uas, guard=False)
    assert rec.calls > 0  # our own prompt was sent to ASR as if the callee had spoken
    assert [t for t in o.turns if t.speaker == "callee"], o.turns
