"""`outcall demo`: a small real campaign over loopback SIP/RTP against local scripted callees.

The callees run on a second UserAgent of ours in answer mode. Each behaves differently (interested, asks
the price, refuses, busy in a meeting, asks to stop calling, silent, voicemail, busy line, no answer) and
speaks its replies as real synthesised speech, reactively: it waits for the robot to finish a sentence,
then answers. The robot hears them through its real ASR and classifier; the outcomes go to the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

import dialplans
from engine.audio import PCM
from engine.call.turns import EndpointConfig, Endpointer, Utterance
from engine.dialog.runner import Runner, Say
from engine.dialog.schema import Dialplan
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.leg import SipCallLeg
from gateway.sip.message import SipUri
from gateway.store.sqlite import SqliteStore
from gateway.trunks import TrunkRouter
from outcall.report import format_outcome, results_table
from outcall.runtime import Speech, build_speech, prerender, run_call, start_ua
from outcall.settings import Settings
from outcall.softphone import BaresipCallee, available

log = logging.getLogger("outcall.demo")


@dataclass(frozen=True)
class Scenario:
    name: str
    replies: tuple[str | None, ...] = ()
    behaviour: Literal["answer", "busy", "no_answer"] = "answer"
    answer_with: str | None = None  # what the line says as soon as it answers (voicemail greeting)
    expect: Disposition = Disposition.ANSWERED
    expect_tag: str | None = None


ZH = (
    Scenario("interested", ("好的，可以啊，我有兴趣。",), expect_tag="booked"),
    Scenario("asks_price", ("这个课要多少钱？", "免费的啊，那可以，我带孩子去。"), expect_tag="booked"),
    Scenario("refuses", ("不用了，我们不需要，谢谢。",), expect_tag="refused"),
    Scenario("in_meeting", ("我现在在开会，你晚点再打吧。",), expect_tag="callback"),
    Scenario("stop_calling", ("别再给我打电话了！",), expect_tag="dnc"),
    Scenario("silent", (None, None), expect_tag="no_response"),
    Scenario(
        "voicemail",
        answer_with="您好，您拨打的用户暂时无法接听，请在提示音后留言。",
        expect=Disposition.VOICEMAIL,
    ),
    Scenario("busy_line", behaviour="busy", expect=Disposition.BUSY),
    Scenario("no_answer", behaviour="no_answer", expect=Disposition.NO_ANSWER),
)
EN = (
    Scenario("interested", ("Yes, sure, that sounds great.",), expect_tag="booked"),
    Scenario("asks_price", ("How much does it cost?", "Okay, yes, we will come."), expect_tag="booked"),
    Scenario("refuses", ("No thanks, we are not interested.",), expect_tag="refused"),
    Scenario("stop_calling", ("Stop calling me!",), expect_tag="dnc"),
    Scenario(
        "voicemail",
        answer_with="Hi, you have reached Sam. Please leave a message after the tone.",
        expect=Disposition.VOICEMAIL,
    ),
    Scenario("busy_line", behaviour="busy", expect=Disposition.BUSY),
)

CALLEE_VOICE = {"zh": "zf_xiaobei", "en": "af_heart"}
RING_TIMEOUT_S = 8.0
CONCURRENCY = 3


def beep(seconds: float = 0.4, hz: float = 1000.0) -> PCM:
    t = np.arange(int(8000 * seconds)) / 8000
    return (np.sin(2 * np.pi * hz * t) * 9000).astype(np.int16)


@dataclass
class ScriptedCallees:
    """Answer-mode handler: dispatches each incoming INVITE to its scenario by the Request-URI user."""

    scenarios: dict[str, Scenario]
    audio: dict[str, PCM] = field(default_factory=dict)

    async def prepare(self, speech: Speech, language: str) -> None:
        voice = CALLEE_VOICE[language]
        for sc in self.scenarios.values():
            for text in (*sc.replies, sc.answer_with):
                if text and text not in self.audio:
                    self.audio[text] = await speech.synthesizer.render(text, voice=voice)

    async def __call__(self, leg: SipCallLeg) -> None:
        user = SipUri.parse(leg.info.target).user or ""
        sc = self.scenarios.get(user)
        if sc is None:
            await leg.reject(404, "Not Found")
            return
        if sc.behaviour == "busy":
            leg.ring()
            await leg.reject(486, "Busy Here")
            return
        leg.ring()
        if sc.behaviour == "no_answer":
            await leg.wait_ended()
            return
        await leg.answer()
        if sc.answer_with:
            leg.play(np.concatenate([self.audio[sc.answer_with], np.zeros(2400, np.int16), beep()]))
        replies = list(sc.replies)
        ep = Endpointer(EndpointConfig(end_silence_ms=700))
        async for frame in leg.frames():
            ev = ep.feed(frame)
            if isinstance(ev, Utterance) and replies and not leg.playout.busy:
                text = replies.pop(0)
                if text:
                    leg.play(self.audio[text])


async def opening_seconds(speech: Speech, plan: Dialplan) -> float:
    """How long the robot talks after answering before it first listens (disclosure + first question)."""
    total = 0.0
    for action in Runner(plan).start():
        if isinstance(action, Say):
            pcm = await speech.synthesizer.render(action.text, voice=plan.voice)
            total += len(pcm) / 8000
    return total


def wants_baresip(sc: Scenario) -> bool:
    """One reply after the opening: a fixed timeline a softphone playing a WAV can follow."""
    return (
        sc.behaviour == "answer" and len(sc.replies) == 1 and sc.replies[0] is not None and not sc.answer_with
    )


async def run_demo(
    settings: Settings, *, as_json: bool = False, language: str = "zh", use_baresip: bool = True
) -> int:
    t0 = time.monotonic()
    scenarios = ZH if language == "zh" else EN
    plan: Dialplan = dialplans.get("trial-class-zh" if language == "zh" else "trial-class-en")
    _say(f"outcall demo: loading speech models ({settings.asr}, {settings.tts}) ...", as_json)
    speech = build_speech(settings)
    store = SqliteStore(settings.db)
    callees = ScriptedCallees({s.name: s for s in scenarios})
    robot = callee_ua = None
    phones: list[BaresipCallee] = []
    try:
        n = await prerender(speech, plan)
        await callees.prepare(speech, language)
        _say(
            f"  {n} prompts of {plan.name} rendered to 8 kHz (cached); models ready in "
            f"{time.monotonic() - t0:.1f}s",
            as_json,
        )
        callee_ua = await start_ua(
            settings.model_copy(update={"sip_bind": "127.0.0.1:0"}), on_incoming=callees
        )
        robot = await start_ua(settings.model_copy(update={"sip_bind": "127.0.0.1:0"}))
        router = TrunkRouter(robot, settings.all_trunks())
        host, port = callee_ua.local_addr
        targets = {sc.name: f"sip:{sc.name}@{host}:{port}" for sc in scenarios}
        served = {sc.name: "our UA (answer mode)" for sc in scenarios}
        if use_baresip and available():
            delay = await opening_seconds(speech, plan) + 0.8
            workdir = Path(tempfile.mkdtemp(prefix="outcall-demo-"))
            for sc in scenarios:
                if wants_baresip(sc):
                    text = sc.replies[0] or ""
                    phone = BaresipCallee(workdir / sc.name, callees.audio[text], delay_s=delay, user=sc.name)
                    targets[sc.name] = await phone.start()
                    phones.append(phone)
                    served[sc.name] = "baresip"
        _say(
            f"  scripted callees on sip:*@{host}:{port}; robot UA on {robot.local_addr[0]}:"
            f"{robot.local_addr[1]}; dialing {len(scenarios)} calls, {CONCURRENCY} at a time\n",
            as_json,
        )
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(sc: Scenario) -> tuple[str, CallOutcome]:
            async with sem:
                o = await run_call(
                    router,
                    speech,
                    plan,
                    targets[sc.name],
                    settings=settings,
                    ring_timeout=RING_TIMEOUT_S,
                    campaign="demo",
                )
                await store.save_outcome(o)
                if not as_json:
                    _say(format_outcome(o) + "\n", False)
                return sc.name, o

        rows = await asyncio.gather(*(one(sc) for sc in scenarios))
    finally:
        for phone in phones:
            await phone.stop()
        for ua in (robot, callee_ua):
            if ua is not None:
                await ua.close()
        speech.close()
        store.close()
    ok = sum(1 for (name, o) in rows if _as_expected(callees.scenarios[name], o))
    if as_json:
        sys.stdout.write(json.dumps([o.model_dump(mode="json") for _, o in rows], ensure_ascii=False) + "\n")
        return 0
    _say(results_table(rows), False)
    by_peer: dict[str, list[str]] = {}
    for name, peer in served.items():
        by_peer.setdefault(peer, []).append(name)
    _say("\ncallees: " + "; ".join(f"{peer}: {', '.join(names)}" for peer, names in by_peer.items()), False)
    connected = sum(1 for _, o in rows if o.answered_at is not None)
    _say(
        f"\n{len(rows)} calls, {connected} connected, {ok}/{len(rows)} as the scenario expected, "
        f"in {time.monotonic() - t0:.1f}s; outcomes stored in {settings.db}",
        False,
    )
    return 0


def _as_expected(sc: Scenario, o: CallOutcome) -> bool:
    return o.disposition is sc.expect and (sc.expect_tag is None or sc.expect_tag in o.tags)


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
