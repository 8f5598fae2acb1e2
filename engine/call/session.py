"""One answered call: listen, understand, walk the dialplan, speak; produce the CallOutcome.

Three tasks per call in one TaskGroup: media in (frames -> endpointer -> utterance queue), leg events
(dtmf, hang-up), and the dialog loop that executes the runner's actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from engine.call.playback import PlaybackHandle
from engine.call.turns import EndpointConfig, Endpointer, SpeechStarted, Utterance
from engine.clock import Clock, RealClock
from engine.dialog.grading import grade
from engine.dialog.runner import Action, Hangup, Listen, Runner, Say, Transfer
from engine.dialog.schema import Dialplan
from engine.dispositions import Disposition
from engine.errors import ModelError, TelephonyError
from engine.events import DtmfReceived, Ended, MediaTimeout
from engine.outcome import CallOutcome, Turn
from engine.ports import CallLeg, Classifier, ClassifyContext, Prediction, Recognizer, Synthesizer

log = logging.getLogger("outcall.call")

T = TypeVar("T")


@dataclass(frozen=True)
class _Dtmf:
    digit: str


@dataclass
class SessionConfig:
    endpoint: EndpointConfig | None = None
    listen_during_prompt: bool = False


class CallSession:
    def __init__(
        self,
        leg: CallLeg,
        plan: Dialplan,
        *,
        recognizer: Recognizer,
        classifier: Classifier,
        synthesizer: Synthesizer,
        clock: Clock | None = None,
        variables: dict[str, Any] | None = None,
        campaign: str | None = None,
        config: SessionConfig | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.leg = leg
        self.plan = plan
        self.recognizer = recognizer
        self.classifier = classifier
        self.synthesizer = synthesizer
        self.clock = clock or RealClock()
        self.runner = Runner(plan, variables)
        self.campaign = campaign
        self.config = config or SessionConfig()
        self._now = now or self.clock.now
        self.turns: list[Turn] = []
        self._utterances: asyncio.Queue[Utterance | _Dtmf] = asyncio.Queue()
        self._ended = asyncio.Event()
        self._bot_speaking = False
        self._answer_t = 0.0
        self._error: str | None = None
        self._disposition: Disposition | None = None
        self._hangup_by: str | None = None

    @property
    def call_id(self) -> str:
        return self.leg.info.call_id

    def _rel(self) -> float:
        return round(self.clock.monotonic() - self._answer_t, 3)

    async def run(self) -> CallOutcome:
        started = self.leg.info.invited_at or self._now()
        try:
            await self.leg.wait_answered()
        except TelephonyError as e:
            log.info("call %s not answered: %s", self.call_id, e.disposition, extra={"call_id": self.call_id})
            info = await self.leg.wait_ended()
            return self._outcome(started, disposition=e.disposition, error=None if e.sip_code else str(e))
        self._answer_t = self.clock.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                media = tg.create_task(self._media_in())
                events = tg.create_task(self._events())
                await self._dialog()
                media.cancel()
                events.cancel()
        except* ModelError as eg:
            self._error = f"model failed mid-call: {eg.exceptions[0]}"
            self._disposition = Disposition.FAILED
            self._hangup_by = "system"
            log.error("call %s: %s", self.call_id, self._error, extra={"call_id": self.call_id})
        with contextlib.suppress(Exception):
            await self.leg.hangup("normal")
        info = await self.leg.wait_ended()
        disposition = self._disposition or info.disposition or Disposition.ANSWERED
        return self._outcome(started, disposition=disposition, error=self._error)

    def _outcome(self, started: datetime, *, disposition: Disposition, error: str | None) -> CallOutcome:
        info = self.leg.info
        st = self.runner.state
        connected = info.answered_at is not None
        st.stats.connected = connected
        g, rule = grade(st.stats)
        if not connected:
            g, rule = "E", "E: not connected"
        hangup_by = self._hangup_by or info.hangup_by
        return CallOutcome(
            call_id=info.call_id,
            campaign=self.campaign,
            to=info.target,
            caller_id=info.caller_id,
            trunk=info.trunk,
            dialplan=self.plan.name,
            dialplan_version=self.plan.version,
            disposition=disposition,
            sip_code=info.sip_code,
            q850_cause=info.q850_cause,
            reason=info.reason,
            grade=g,
            grade_rule=rule,
            hangup_by=hangup_by,
            started_at=started,
            ringing_at=info.ringing_at,
            answered_at=info.answered_at,
            ended_at=info.ended_at or self._now(),
            turns=self.turns,
            variables=dict(st.variables),
            tags=list(st.tags),
            last_node=st.node,
            error=error,
        )

    # --- tasks ---------------------------------------------------------------------------------------

    async def _media_in(self) -> None:
        ep = Endpointer(self.config.endpoint)
        async for frame in self.leg.frames():
            ev = ep.feed(frame)
            if isinstance(ev, SpeechStarted):
                log.debug("call %s speech onset", self.call_id, extra={"call_id": self.call_id})
            elif isinstance(ev, Utterance):
                if self._bot_speaking and not self.config.listen_during_prompt:
                    continue
                await self._utterances.put(ev)
        self._ended.set()

    async def _events(self) -> None:
        async for ev in self.leg.events():
            if isinstance(ev, DtmfReceived):
                await self._utterances.put(_Dtmf(ev.digit))
            elif isinstance(ev, MediaTimeout):
                self._disposition = Disposition.MEDIA_TIMEOUT
            elif isinstance(ev, Ended):
                if self._hangup_by is None:
                    self._hangup_by = ev.by
                self._ended.set()
                return

    async def _race(self, aw: Awaitable[T], limit_s: float | None = None) -> T | None:
        """Await `aw` unless the call ends (or the timeout passes) first."""
        task = asyncio.ensure_future(aw)
        ended = asyncio.ensure_future(self._ended.wait())
        waits: set[asyncio.Future[Any]] = {task, ended}
        timer: asyncio.Future[None] | None = None
        if limit_s is not None:
            timer = asyncio.ensure_future(self.clock.sleep(limit_s))
            waits.add(timer)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in waits:
                if f is not task and not f.done():
                    f.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def _dialog(self) -> None:
        actions: list[Action] = self.runner.start()
        deadline = self.clock.monotonic() + self.plan.max_duration_s
        while actions and not self._ended.is_set():
            action = actions.pop(0)
            if self.clock.monotonic() > deadline:
                self.runner.state.end_reason = "max_duration"
                break
            if isinstance(action, Say):
                await self._say(action)
            elif isinstance(action, Listen):
                actions = await self._listen(action) + actions
            elif isinstance(action, Hangup):
                self._hangup_by = self._hangup_by or "robot"
                if action.disposition is not Disposition.ANSWERED:
                    self._disposition = action.disposition
                break
            elif isinstance(action, Transfer):
                actions = self.runner.on_transfer_failed() + actions

    async def _say(self, action: Say) -> None:
        t0 = self._rel()
        voice = self.plan.voice
        pcm = await self.synthesizer.render(action.text, voice=voice)
        if self._ended.is_set():
            return
        self._bot_speaking = True
        handle: PlaybackHandle = self.leg.play(pcm, label=action.node)
        try:
            await self._race(handle.wait())
        finally:
            self._bot_speaking = False
        # drop what the callee said over a non-interruptible prompt from the next turn's queue
        turn = Turn(
            speaker="bot",
            text=action.text,
            node=action.node,
            start_s=t0,
            end_s=self._rel(),
            interrupted=handle.interrupted,
        )
        self.turns.append(turn)

    async def _listen(self, action: Listen) -> list[Action]:
        item = await self._race(self._utterances.get(), limit_s=action.timeout_s)
        if self._ended.is_set():
            return []
        if item is None:
            log.info("call %s node %s: no input", self.call_id, action.node, extra={"call_id": self.call_id})
            return self.runner.on_no_input()
        if isinstance(item, _Dtmf):
            self.turns.append(
                Turn(speaker="callee", text="", dtmf=item.digit, node=action.node, start_s=self._rel())
            )
            return self.runner.on_reply("", None, dtmf=item.digit)
        start = self._rel() - item.duration_s
        transcript = await self.recognizer.transcribe(item.pcm, sample_rate=8000)
        text = transcript.text.strip()
        if not text:
            return self.runner.on_no_input()
        ctx = ClassifyContext(
            question=self.turns[-1].text if self.turns else None,
            expects=action.expects,
            language=self.plan.language,
            extra_intents={k: v.examples for k, v in self.plan.intents.items()},
        )
        preds = await self.classifier.classify([text], ctx)
        pred = preds[0] if preds else Prediction(intent="other", confidence=0.0)
        self.turns.append(
            Turn(
                speaker="callee",
                text=text,
                node=action.node,
                intent=pred.intent,
                confidence=round(pred.confidence, 3),
                emotion=pred.emotion,
                start_s=round(max(0.0, start), 3),
                end_s=self._rel(),
                asr_engine=transcript.engine or self.recognizer.name,
            )
        )
        log.info(
            "call %s node %s heard %r -> %s (%.2f)",
            self.call_id,
            action.node,
            text,
            pred.intent,
            pred.confidence,
            extra={"call_id": self.call_id},
        )
        return self.runner.on_reply(text, pred)
