"""The first AI conversations over real SIP/RTP: our engine dials baresip, a real softphone, which says a
Kokoro-rendered reply after our greeting; the engine hears it (Whisper), classifies it (rules), walks the
dialplan, answers and hangs up. Then baresip's recording of what we sent is transcribed to prove our
prompt reached the callee as audio.

Models load once per module (real Whisper base + Kokoro from var/models or $OUTCALL_MODELS_DIR).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from peers import Baresip

import dialplans
from engine.audio import PCM, SAMPLE_RATE
from engine.dialog.runner import Runner, Say
from engine.dialog.schema import Dialplan
from engine.dialog.templating import render
from engine.dispositions import Disposition
from engine.errors import ModelError
from engine.outcome import CallOutcome, Turn
from engine.ports import Transcript
from gateway.sip.ua import UserAgent
from models.tts.cache import write_wav
from outcall.runtime import Speech, build_speech, prerender, run_call, start_ua, with_recording
from outcall.settings import Settings, load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

log = logging.getLogger("tests.e2e.conversation")

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("OUTCALL_MODELS_DIR") or REPO / "var" / "models")

#: baresip starts speaking this long after our disclosure + greeting have been played
AFTER_GREETING_S = 0.8
#: silence after the callee's reply: keeps baresip on the line while we answer and say goodbye
TAIL_S = 12.0
#: one whole conversation (about 15 s of audio) must end within this
CALL_LIMIT_S = 40.0

BaresipFactory = Callable[..., Baresip]


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings().model_copy(
        update={
            "db": str(tmp_path_factory.mktemp("db") / "outcall.db"),
            "recordings_dir": str(tmp_path_factory.mktemp("recordings")),
            "sip_bind": "127.0.0.1:0",
            "models_dir": str(MODELS_DIR),
        }
    )


@pytest.fixture(scope="module")
def speech(settings: Settings) -> Iterator[Speech]:
    """Whisper + rules + Kokoro (prompt-cached), loaded once for the module (~2 s)."""
    loaded = build_speech(settings)
    try:
        yield loaded
    finally:
        loaded.close()


@pytest.fixture
async def ua(settings: Settings) -> AsyncIterator[UserAgent]:
    agent = await start_ua(settings)
    try:
        yield agent
    finally:
        await agent.close()


# -------------------------------------------------------------------------------------------- helpers


def seconds(pcm: PCM) -> float:
    return len(pcm) / SAMPLE_RATE


def opening_says(plan: Dialplan) -> list[Say]:
    """What the engine says before it first listens: disclosure, then the start node's prompt."""
    return [a for a in Runner(plan).start() if isinstance(a, Say)]


def node_text(plan: Dialplan, node: str) -> str:
    return render(plan.nodes[node].texts()[0], plan.variables)


async def opening_duration(speech: Speech, plan: Dialplan) -> float:
    """Rendered length of the opening prompts (the same synthesiser and cache the call uses)."""
    total = 0.0
    for say in opening_says(plan):
        total += seconds(await speech.synthesizer.render(say.text, voice=plan.voice))
    return total


async def callee_wav(speech: Speech, text: str, voice: str, path: Path) -> tuple[Path, float]:
    """The callee's reply as an 8 kHz WAV rendered by Kokoro; returns (path, seconds)."""
    pcm = await speech.synthesizer.render(text, voice=voice)
    await asyncio.to_thread(write_wav, path, pcm)
    return path, seconds(pcm)


def read_recording(path: Path) -> tuple[PCM, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, f"{path}: not mono 16-bit"
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return pcm, w.getframerate()


async def heard_by_callee(speech: Speech, phone: Baresip, language: str) -> str:
    """Transcribe what baresip decoded from our RTP (its dump-*-dec.wav)."""
    await phone.wait_event_async("CALL_CLOSED", 10.0)
    pcm, rate = await asyncio.to_thread(read_recording, phone.recording("dec"))
    assert seconds(pcm) * SAMPLE_RATE / rate > 3.0, "baresip recorded almost nothing from us"
    result: Transcript = await speech.recognizer.transcribe(pcm, sample_rate=rate, language=language)
    log.info("baresip heard (%s): %s", language, result.text)
    return result.text


async def converse(
    ua: UserAgent,
    speech: Speech,
    settings: Settings,
    baresip: BaresipFactory,
    tmp_path: Path,
    *,
    plan_name: str,
    reply: str,
    voice: str,
    record: bool = False,
) -> tuple[CallOutcome, Baresip, Dialplan, float]:
    """One call: baresip answers, waits for our opening to finish, says `reply`, stays on the line.
    Returns the outcome, the phone, the plan and the reply's length in seconds."""
    plan, _ = with_recording(dialplans.get(plan_name), record)  # a recorded call also plays the notice
    await prerender(speech, plan)
    wav, reply_s = await callee_wav(speech, reply, voice, tmp_path / f"{plan_name}-reply.wav")
    delay = await opening_duration(speech, plan) + AFTER_GREETING_S
    phone = baresip(audio=wav, delay_s=delay, tail_s=TAIL_S)
    outcome = await asyncio.wait_for(
        run_call(
            ua, speech, plan, phone.uri, settings=settings, ring_timeout=5.0, campaign="e2e", record=record
        ),
        CALL_LIMIT_S,
    )
    log.info("outcome: %s", outcome.model_dump_json(include={"disposition", "tags", "grade", "turns"}))
    return outcome, phone, plan, reply_s


def bot_turn(outcome: CallOutcome, node: str) -> Turn:
    found = [t for t in outcome.turns if t.speaker == "bot" and t.node == node]
    assert found, f"no bot turn for node {node!r}: {outcome.turns}"
    return found[0]


def callee_turns(outcome: CallOutcome) -> list[Turn]:
    return [t for t in outcome.turns if t.speaker == "callee" and t.intent != "backchannel"]


def assert_timeline(outcome: CallOutcome) -> None:
    """Turns are in time order, each ends after it starts, and the bot never talks over itself."""
    starts = [t.start_s for t in outcome.turns]
    assert starts == sorted(starts), outcome.turns
    assert all(t.start_s >= 0.0 for t in outcome.turns), outcome.turns
    for t in outcome.turns:
        assert t.end_s is not None and t.end_s >= t.start_s, t
    bots = [t for t in outcome.turns if t.speaker == "bot"]
    for a, b in itertools.pairwise(bots):
        assert a.end_s is not None and b.start_s >= a.end_s, (a, b)
    assert outcome.answered_at is not None and outcome.ended_at >= outcome.answered_at


def reply_latency(outcome: CallOutcome, reply_s: float, answer_node: str) -> float:
    """Seconds from the end of the callee's words to the first audio of our answer."""
    callee = callee_turns(outcome)[0]
    answer = bot_turn(outcome, answer_node)
    latency = answer.start_s - (callee.start_s + reply_s)
    log.info("reply latency (end of callee speech -> our answer starts): %.2f s", latency)
    return latency


def assert_opening(outcome: CallOutcome, plan: Dialplan) -> Turn:
    """The disclosure and the greeting were both played, whole, before the callee spoke."""
    opening = opening_says(plan)
    bots = [t for t in outcome.turns if t.speaker == "bot"]
    assert [t.text for t in bots[: len(opening)]] == [s.text for s in opening]
    greet = bot_turn(outcome, plan.start)
    assert greet.text == node_text(plan, plan.start) and not greet.interrupted
    callee = callee_turns(outcome)[0]
    assert greet.end_s is not None and callee.start_s >= greet.end_s - 0.2, (greet, callee)
    return greet


# ---------------------------------------------------------------------------------------------- tests


async def test_mandarin_interested_parent_books_over_real_sip(
    ua: UserAgent, speech: Speech, settings: Settings, baresip: BaresipFactory, tmp_path: Path
) -> None:
    outcome, phone, plan, reply_s = await converse(
        ua,
        speech,
        settings,
        baresip,
        tmp_path,
        plan_name="trial-class-zh",
        reply="好的，可以啊，我有兴趣。",
        voice="zf_xiaobei",
    )
    assert outcome.disposition is Disposition.ANSWERED, outcome
    assert outcome.error is None
    callee = callee_turns(outcome)
    assert len(callee) == 1, outcome.turns
    assert ("兴趣" in callee[0].text or "可以" in callee[0].text) and callee[0].intent == "affirm", callee
    assert callee[0].asr_engine == "whisper-base"
    assert "booked" in outcome.tags and "interested" in outcome.tags, outcome.tags
    assert outcome.grade == "B", outcome.grade_rule
    assert_opening(outcome, plan)
    confirm = bot_turn(outcome, "confirm")
    assert confirm.text == node_text(plan, "confirm") and not confirm.interrupted
    assert outcome.last_node == "confirm" and outcome.hangup_by == "robot"
    assert_timeline(outcome)
    assert 0.0 < reply_latency(outcome, reply_s, "confirm") < 5.0

    heard = await heard_by_callee(speech, phone, "zh")
    assert any(word in heard for word in ("试听课", "免费", "少儿编程")), heard


async def test_english_parent_refuses_over_real_sip(
    ua: UserAgent, speech: Speech, settings: Settings, baresip: BaresipFactory, tmp_path: Path
) -> None:
    outcome, phone, plan, reply_s = await converse(
        ua,
        speech,
        settings,
        baresip,
        tmp_path,
        plan_name="trial-class-en",
        reply="No thanks, we are not interested.",
        voice="af_heart",
        record=True,
    )
    assert outcome.disposition is Disposition.ANSWERED, outcome
    callee = callee_turns(outcome)
    assert len(callee) == 1, outcome.turns
    assert "interested" in callee[0].text.lower() and callee[0].intent == "not_interested", callee
    assert "refused" in outcome.tags and "booked" not in outcome.tags, outcome.tags
    assert outcome.grade == "C", outcome.grade_rule
    assert_opening(outcome, plan)
    refused = bot_turn(outcome, "refused")
    assert refused.text == node_text(plan, "refused")
    assert outcome.last_node == "refused" and outcome.hangup_by == "robot"
    assert_timeline(outcome)
    assert 0.0 < reply_latency(outcome, reply_s, "refused") < 5.0

    heard = (await heard_by_callee(speech, phone, "en")).lower()
    assert "trial" in heard or "free" in heard, heard

    # the recording: stereo FLAC, callee on the left, the robot on the right, aligned with the call
    import soundfile as sf

    assert outcome.recording is not None and outcome.recording.endswith(".flac"), outcome.recording
    data, rate = await asyncio.to_thread(sf.read, outcome.recording, dtype="int16")
    assert rate == SAMPLE_RATE and data.shape[1] == 2
    assert abs(len(data) / rate - outcome.duration_s) < 2.0, (len(data) / rate, outcome.duration_s)
    callee_side = await speech.recognizer.transcribe(np.ascontiguousarray(data[:, 0]), language="en")
    robot_side = await speech.recognizer.transcribe(np.ascontiguousarray(data[:, 1]), language="en")
    assert "interested" in callee_side.text.lower(), callee_side.text
    assert "trial" in robot_side.text.lower() or "free" in robot_side.text.lower(), robot_side.text


async def test_stop_calling_request_is_honoured_with_an_apology(
    ua: UserAgent, speech: Speech, settings: Settings, baresip: BaresipFactory, tmp_path: Path
) -> None:
    outcome, _phone, plan, _reply_s = await converse(
        ua,
        speech,
        settings,
        baresip,
        tmp_path,
        plan_name="trial-class-zh",
        reply="别再给我打电话了",
        voice="zf_xiaobei",
    )
    assert outcome.disposition is Disposition.ANSWERED, outcome
    callee = callee_turns(outcome)
    assert callee and callee[0].intent == "stop_calling", callee
    assert "dnc" in outcome.tags, outcome.tags
    last_bot = [t for t in outcome.turns if t.speaker == "bot"][-1]
    assert "抱歉" in last_bot.text and not last_bot.interrupted, last_bot
    apology = next(g.say for g in plan.globals if g.intent == "stop_calling")
    assert isinstance(apology, str) and last_bot.text == render(apology, plan.variables)
    assert outcome.hangup_by == "robot"
    assert_timeline(outcome)


def test_missing_model_dir_names_the_setting_and_the_fix(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        build_speech(settings.model_copy(update={"models_dir": str(tmp_path / "no-models")}))
    msg = str(err.value)
    assert str(tmp_path / "no-models") in msg
    assert "OUTCALL_MODELS_DIR" in msg and "make models" in msg, msg


class BrokenRecognizer:
    """Wraps the real recogniser but fails the way a crashed model does."""

    name = "broken-whisper"

    def __init__(self) -> None:
        self.calls = 0

    async def transcribe(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        self.calls += 1
        raise ModelError("simulated inference failure", hint="this is a test")


async def test_model_failure_mid_call_fails_only_that_call(
    ua: UserAgent, speech: Speech, settings: Settings, baresip: BaresipFactory, tmp_path: Path
) -> None:
    plan = dialplans.get("trial-class-zh")
    await prerender(speech, plan)
    delay = await opening_duration(speech, plan) + AFTER_GREETING_S
    wav, _ = await callee_wav(speech, "好的，可以啊，我有兴趣。", "zf_xiaobei", tmp_path / "reply.wav")
    broken_phone = baresip(audio=wav, delay_s=delay, tail_s=TAIL_S)
    good_phone = baresip(audio=wav, delay_s=delay, tail_s=TAIL_S)
    broken = BrokenRecognizer()
    broken_speech = dataclasses.replace(speech, recognizer=broken, closers=[])

    failed, ok = await asyncio.wait_for(
        asyncio.gather(
            run_call(ua, broken_speech, plan, broken_phone.uri, settings=settings, ring_timeout=5.0),
            run_call(ua, speech, plan, good_phone.uri, settings=settings, ring_timeout=5.0),
        ),
        CALL_LIMIT_S,
    )

    assert broken.calls >= 1
    assert failed.disposition is Disposition.FAILED, failed
    assert failed.error is not None and "simulated inference failure" in failed.error, failed.error
    assert failed.hangup_by == "system"
    assert "booked" not in failed.tags
    await broken_phone.wait_event_async("CALL_CLOSED", 5.0)  # we hung the failed call up

    assert ok.disposition is Disposition.ANSWERED and ok.error is None, ok
    assert "booked" in ok.tags, ok.tags
    assert ua.active_calls == 0
