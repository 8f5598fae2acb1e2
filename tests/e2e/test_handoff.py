"""Hand-off to a human agent with two real baresip softphones on loopback: the callee and the agent.

The dialplan transfers at once; the callee's phone plays a 700 Hz tone, the agent's a 1900 Hz tone. Our
engine holds the callee (espeak hold prompt), dials the agent as a second SIP leg, whispers the summary
to the agent, bridges the two legs' RTP in our process, and both baresip recordings prove the audio
crossed: the callee heard 1900 Hz, the agent heard 700 Hz.
"""

from __future__ import annotations

import asyncio
import shutil
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from peers import Baresip

from engine.audio import PCM, SAMPLE_RATE
from engine.call.session import CallSession
from engine.call.transfer import Bridge, Transferer
from engine.dialog import loader
from engine.dialog.schema import Dialplan
from engine.dispositions import Disposition
from engine.handoff import AgentConfig, AgentDirectory, QueueConfig
from engine.outcome import CallOutcome
from engine.ports import CallLeg, Transcript
from gateway.bridge import BridgeRecorder, MediaBridge
from gateway.recording import CallRecorder
from gateway.sip.ua import UserAgent
from outcall.runtime import Speech, run_call, start_ua
from outcall.settings import load_settings

pytestmark = pytest.mark.e2e

BaresipFactory = Callable[..., Baresip]
CALLEE_HZ = 700.0
AGENT_HZ = 1900.0

PLAN = """
name: handoff-e2e
language: zh-CN
voice: cmn
max_duration_s: 60
nodes:
  start:
    type: transfer
    say: 好的，请稍等。
    interruptible: false
    queue: agents
    fallback: sorry
  sorry:
    type: hangup
    say: 抱歉，顾问都在忙，我们稍后给您回电。
    tag: [human_requested, callback]
    callback: {after_min: 30}
start: start
"""


class _NoAsr:
    name = "none"

    async def transcribe(
        self, pcm: PCM, *, sample_rate: int = 8000, language: str | None = None
    ) -> Transcript:
        return Transcript(text="")


def _plan() -> Dialplan:
    plan, problems = loader.parse(PLAN)
    assert plan is not None, problems
    return plan


def _tone_wav(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return path


def _read(path: Path) -> PCM:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def tone_seconds(pcm: PCM, hz: float) -> float:
    """Seconds of 100 ms windows whose power is mostly (>60 %) at `hz` (FFT bin ±1) and not silence."""
    win = SAMPLE_RATE // 10
    n = len(pcm) // win
    if n == 0:
        return 0.0
    x = pcm[: n * win].reshape(n, win).astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(win), axis=1)) ** 2
    k = round(hz * win / SAMPLE_RATE)
    share = spec[:, k - 1 : k + 2].sum(axis=1) / np.maximum(spec.sum(axis=1), 1e-9)
    loud = np.sqrt((x**2).mean(axis=1)) > 300
    return float(((share > 0.6) & loud).sum()) * 0.1


@pytest.fixture
async def ua(tmp_path: Path) -> AsyncIterator[UserAgent]:
    agent = UserAgent(bind_host="127.0.0.1", bind_port=0, rtp_host="127.0.0.1")
    await agent.start()
    try:
        yield agent
    finally:
        await agent.close()


async def _espeak() -> object:
    from models.tts.espeak import EspeakSynthesizer

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install --no-install-recommends espeak-ng)")

    return EspeakSynthesizer("cmn")


async def _call(
    ua: UserAgent,
    callee: Baresip,
    agent_uri: str,
    *,
    timeout_s: float = 20.0,
    ring_timeout_s: float = 15.0,
    recorder: BridgeRecorder | None = None,
    on_bridge: asyncio.Event | None = None,
    call_recordings: list[CallRecorder] | None = None,
) -> tuple[asyncio.Task[CallOutcome], CallSession]:
    from models.nlu.rules import RulesClassifier

    synth = await _espeak()
    directory = AgentDirectory(
        agents=[AgentConfig(id="zhang", uri=agent_uri, skills=["zh"])],
        queues=[QueueConfig(name="agents", timeout_s=timeout_s, ring_timeout_s=ring_timeout_s)],
    )

    def bridge(a: CallLeg, b: CallLeg) -> Bridge:
        if on_bridge is not None:
            on_bridge.set()
        return MediaBridge(a, b, recorder=recorder)

    transferer = Transferer(directory, ua, synth, bridge, voice="cmn")  # type: ignore[arg-type]
    leg = await ua.originate(callee.uri, ring_timeout=10)
    if call_recordings is not None:  # the call's own recording, kept across the bridge
        call_recordings.append(leg.record())
    session = CallSession(
        leg,
        _plan(),
        recognizer=_NoAsr(),
        classifier=RulesClassifier(),
        synthesizer=synth,  # type: ignore[arg-type]
        variables={"name": "王女士"},
        transfer=transferer,
    )
    return asyncio.create_task(session.run()), session


async def test_bridge_carries_audio_both_ways_until_the_agent_hangs_up(
    baresip: BaresipFactory, ua: UserAgent, tmp_path: Path
) -> None:
    # the callee's tone starts once our prompt is over (a tone would otherwise barge in on it)
    callee = baresip(audio=_tone_wav(tmp_path / "callee.wav", CALLEE_HZ, 40.0), delay_s=2.0, tail_s=5.0)
    # the agent's phone plays 1900 Hz for 9 s after answering, then hangs up by itself
    agent = baresip(audio=_tone_wav(tmp_path / "agent.wav", AGENT_HZ, 9.0), tail_s=0.2, user="agent")
    recorder = BridgeRecorder(tmp_path / "bridge.wav")
    whole: list[CallRecorder] = []
    task, _ = await _call(ua, callee, agent.uri, recorder=recorder, call_recordings=whole)
    o = await asyncio.wait_for(task, 60.0)

    assert o.transfer is not None and o.transfer.status == "bridged", o.transfer
    assert o.transfer.agent == "zhang" and o.transfer.ended_by == "agent"
    assert o.hangup_by == "agent" and o.disposition is Disposition.ANSWERED
    assert 0.0 < o.transfer.wait_s < 10.0 and o.transfer.bridged_s > 3.0
    # the callee was hung up by us once the agent left
    await callee.wait_event_async("CALL_CLOSED", 10.0)
    await agent.wait_event_async("CALL_CLOSED", 10.0)
    heard_by_callee = await asyncio.to_thread(_read, callee.recording("dec"))
    heard_by_agent = await asyncio.to_thread(_read, agent.recording("dec"))
    # each side's recording holds seconds of the other side's tone (and the agent never its own)
    assert tone_seconds(heard_by_callee, AGENT_HZ) >= 2.5
    assert tone_seconds(heard_by_agent, CALLEE_HZ) >= 2.5
    assert tone_seconds(heard_by_callee, CALLEE_HZ) < 0.5 and tone_seconds(heard_by_agent, AGENT_HZ) < 0.5
    # the agent heard the whisper before the bridge: speech energy before the callee's tone begins
    # our own recording of the bridge has both directions
    path = await recorder.close()
    with wave.open(str(path), "rb") as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert tone_seconds(stereo[:, 0].copy(), CALLEE_HZ) >= 2.5
    assert tone_seconds(stereo[:, 1].copy(), AGENT_HZ) >= 2.5
    # the call's recording (callee left, what we send right) continues across the bridge: the robot's
    # prompt and then the agent on the right, the callee's tone on the left
    call = whole[0].stereo()
    assert tone_seconds(call[:, 0].copy(), CALLEE_HZ) >= 2.5
    assert tone_seconds(call[:, 1].copy(), AGENT_HZ) >= 2.5
    assert tone_seconds(call[:, 1].copy(), CALLEE_HZ) < 0.5


async def test_agent_not_answering_falls_back_to_a_callback(
    baresip: BaresipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the runtime: [[agents]]/[[queues]] from the settings, run_call wires the transfer."""
    from models.nlu.rules import RulesClassifier

    callee = baresip(tail_s=40.0)  # a quiet callee: the apology is not barged in on
    agent = baresip(user="agent", answermode="manual")  # rings, nobody picks up
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    settings = load_settings(
        db=str(tmp_path / "o.db"),
        agents=[AgentConfig(id="zhang", uri=agent.uri)],
        queues=[QueueConfig(name="agents", timeout_s=5.0, ring_timeout_s=5.0)],
    )
    speech = Speech(recognizer=_NoAsr(), classifier=RulesClassifier(), synthesizer=await _espeak())  # type: ignore[arg-type]
    ua = await start_ua(settings)
    try:
        task = asyncio.create_task(run_call(ua, speech, _plan(), callee.uri, settings=settings))
        await agent.wait_event_async("CALL_INCOMING", 10.0)
        o = await asyncio.wait_for(task, 60.0)
        assert o.transfer is not None and o.transfer.status == "no_agent"
        assert o.disposition is Disposition.TRANSFER_FAILED
        assert "callback" in o.tags and o.variables.get("callback_time")
        assert [t.node for t in o.turns if t.speaker == "bot"] == ["start", "sorry"]
        assert 5.0 <= o.transfer.wait_s < 9.0
        await agent.wait_event_async("CALL_CLOSED", 10.0)  # our CANCEL reached the agent's phone
        await callee.wait_event_async("CALL_CLOSED", 10.0)
    finally:
        await ua.close()


async def test_callee_hanging_up_on_hold_cancels_the_agent_call(
    baresip: BaresipFactory, ua: UserAgent, tmp_path: Path
) -> None:
    callee = baresip(tail_s=40.0)
    agent = baresip(user="agent", answermode="manual")
    task, _ = await _call(ua, callee, agent.uri, timeout_s=30.0, ring_timeout_s=30.0)
    await agent.wait_event_async("CALL_INCOMING", 10.0)
    await asyncio.to_thread(callee.hangup)
    o = await asyncio.wait_for(task, 30.0)
    await agent.wait_event_async("CALL_CLOSED", 10.0)
    assert o.transfer is not None and o.transfer.status == "callee_hung_up"
    assert o.hangup_by == "callee" and o.transfer.wait_s < 25.0


async def test_callee_hanging_up_while_bridged_ends_the_agent_call(
    baresip: BaresipFactory, ua: UserAgent, tmp_path: Path
) -> None:
    callee = baresip(audio=_tone_wav(tmp_path / "callee.wav", CALLEE_HZ, 30.0), tail_s=5.0)
    agent = baresip(audio=_tone_wav(tmp_path / "agent.wav", AGENT_HZ, 30.0), tail_s=5.0, user="agent")
    bridged = asyncio.Event()
    task, _ = await _call(ua, callee, agent.uri, on_bridge=bridged)
    await asyncio.wait_for(bridged.wait(), 30.0)
    await asyncio.to_thread(callee.hangup)
    o = await asyncio.wait_for(task, 30.0)
    await agent.wait_event_async("CALL_CLOSED", 10.0)
    assert o.transfer is not None and o.transfer.status == "bridged" and o.transfer.ended_by == "callee"
    assert o.hangup_by == "callee"


class _CountingRecorder(BridgeRecorder):
    """Sets `enough` once `need` more frames of each side were relayed after `arm()`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.enough = asyncio.Event()
        self._from: tuple[int, int] | None = None
        self.need = 0

    def arm(self, need: int) -> None:
        self._from, self.need = self.frames, need

    def frame(self, side: Literal["a", "b"], pcm: PCM) -> None:
        super().frame(side, pcm)
        if self._from is not None:
            a, b = self.frames
            if min(a - self._from[0], b - self._from[1]) >= self.need:
                self.enough.set()


async def test_supervisor_listening_in_hears_both_sides(
    baresip: BaresipFactory, ua: UserAgent, tmp_path: Path
) -> None:
    callee = baresip(audio=_tone_wav(tmp_path / "callee.wav", CALLEE_HZ, 40.0), delay_s=2.0, tail_s=5.0)
    agent = baresip(audio=_tone_wav(tmp_path / "agent.wav", AGENT_HZ, 40.0), tail_s=5.0, user="agent")
    boss = baresip(audio=_tone_wav(tmp_path / "boss.wav", 1200.0, 40.0), tail_s=5.0, user="boss")
    bridged = asyncio.Event()
    recorder = _CountingRecorder(tmp_path / "bridge.wav")
    task, session = await _call(ua, callee, agent.uri, on_bridge=bridged, recorder=recorder)
    await asyncio.wait_for(bridged.wait(), 30.0)
    transferer = session.transfer
    assert transferer is not None
    leg = await asyncio.wait_for(transferer.listen_in(session.call_id, boss.uri), 15.0)
    assert leg.info.answered_at is not None
    recorder.arm(150)  # 3 s of both sides while the supervisor listens
    await asyncio.wait_for(recorder.enough.wait(), 20.0)
    await asyncio.to_thread(callee.hangup)
    o = await asyncio.wait_for(task, 30.0)
    assert o.transfer is not None and o.transfer.status == "bridged"
    await boss.wait_event_async("CALL_CLOSED", 10.0)  # the supervisor's leg ended with the call
    heard_by_boss = await asyncio.to_thread(_read, boss.recording("dec"))
    assert tone_seconds_mixed(heard_by_boss, CALLEE_HZ, AGENT_HZ) >= 2.0
    # neither side heard the supervisor's 1200 Hz
    await agent.wait_event_async("CALL_CLOSED", 10.0)
    for phone in (callee, agent):
        assert tone_seconds(await asyncio.to_thread(_read, phone.recording("dec")), 1200.0) < 0.3


def tone_seconds_mixed(pcm: PCM, hz1: float, hz2: float) -> float:
    """Seconds of 100 ms windows holding both tones (each bin >= 20 % of the window's power)."""
    win = SAMPLE_RATE // 10
    n = len(pcm) // win
    x = pcm[: n * win].reshape(n, win).astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(win), axis=1)) ** 2
    total = np.maximum(spec.sum(axis=1), 1e-9)

    def share(hz: float) -> np.ndarray:
        k = round(hz * win / SAMPLE_RATE)
        return spec[:, k - 1 : k + 2].sum(axis=1) / total  # type: ignore[no-any-return]

    return float(((share(hz1) > 0.2) & (share(hz2) > 0.2)).sum()) * 0.1
