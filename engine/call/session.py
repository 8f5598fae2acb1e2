"""One answered call: listen, understand, walk the dialplan, speak; produce the CallOutcome.

Three tasks per call in one TaskGroup: media in (frames -> endpointer -> heard queue, barge-in), leg events
(dtmf, hang-up), and the dialog loop that executes the runner's actions.

Barge-in: speech that starts during an interruptible prompt pauses playout at once (the next outbound
frame is silence). When the utterance is words, the prompt ends interrupted (its transcript keeps only
what was played) and the words answer the current question; a backchannel (嗯, 对, uh-huh), a cough or
noise resumes the prompt where it stopped. Speech over a non-interruptible prompt (legal disclosures)
never stops it, but is transcribed; a stop-calling or complaint request heard there is still acted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from typing import Any, TypeVar

import numpy as np

from engine.audio import PCM
from engine.call.amd import AcousticAmd, AmdDecision, MessageCue, decide
from engine.call.early import EarlyMediaMonitor, EarlyMediaReport
from engine.call.echo import EchoConfig, EchoGuard
from engine.call.playback import PlaybackHandle
from engine.call.transfer import Transferer, TransferResult
from engine.call.turns import (
    EndpointConfig,
    Endpointer,
    SpeechAborted,
    SpeechPaused,
    SpeechStarted,
    Utterance,
    is_backchannel,
    is_complete_reply,
)
from engine.clock import Clock, RealClock
from engine.dialog.runner import Action, Hangup, Listen, Runner, Say, Transfer
from engine.dialog.schema import Dialplan
from engine.dialog.timeparse import DEFAULT_WINDOW
from engine.dispositions import Disposition
from engine.errors import ModelError, TelephonyError
from engine.events import DtmfReceived, Ended, MediaTimeout
from engine.intents import Intent
from engine.outcome import CallOutcome, TransferRecord, Turn
from engine.ports import (
    CallLeg,
    Classifier,
    ClassifyContext,
    Prediction,
    Recognizer,
    RecognizerStream,
    Synthesizer,
    Transcript,
    Vad,
)

log = logging.getLogger("outcall.call")

#: final responses that say less than a carrier announcement heard before them (480 without a cause, our
#: own CANCEL's 487, "no route"); a specific one (486 busy, 404, Q.850 cause 20 ...) stands
_VAGUE_FINAL = frozenset({Disposition.NO_ANSWER, Disposition.UNREACHABLE, Disposition.CANCELLED})

T = TypeVar("T")

#: intents acted on even when said over a non-interruptible prompt
_URGENT = frozenset({Intent.STOP_CALLING.value, Intent.COMPLAINT.value})

#: the longest a call bridged to a human agent may last (the dialplan's max_duration_s covers the robot)
MAX_BRIDGED_S = 4 * 3600.0


@dataclass(frozen=True)
class _Dtmf:
    digit: str


@dataclass(frozen=True)
class _Heard:
    """An utterance already transcribed (during a prompt)."""

    utterance: Utterance
    transcript: Transcript
    start_s: float


@dataclass
class SessionConfig:
    endpoint: EndpointConfig | None = None
    barge_in: bool = True
    #: our own prompt echoed back by the line is removed before endpointing (None: off)
    echo: EchoConfig | None = field(default_factory=EchoConfig)
    #: seconds after answer in which what the line says is checked for voicemail/announcements
    amd_window_s: float = 12.0
    #: also listen for a voicemail beep after a greeting longer than a human's (words not needed)
    acoustic_amd: bool = True
    #: after such a beep, how long the words heard up to it may still decide (text rules first)
    acoustic_wait_s: float = 2.0
    #: read the line before answer (early media): ringback/彩铃 music is told apart and never heard as the
    #: callee; speech there (a carrier announcement) goes to the text rules, at most this many utterances
    #: (0: early media is read and dropped, never transcribed)
    early_asr_max: int = 4
    #: when the attempt fails before answer, how long a transcription of early media may still decide
    early_asr_wait_s: float = 5.0
    #: the campaign's calling window (callee local time): call-back times are clamped into it
    calling_window: tuple[time, time] = DEFAULT_WINDOW
    #: the callee's time zone for call-back times (None: this machine's local zone)
    tz: tzinfo | None = None
    #: start transcribing at the endpointer's SpeechPaused (utterance engines only; streaming engines
    #: are fed as they go), keep the result if the utterance ends there
    speculative_asr: bool = True
    #: feed streaming engines (vosk) while the callee speaks, so only the final flush is left at the end
    streaming_asr: bool = True
    #: streaming engines: end the turn at the first short pause (speculate_ms) when the partial text is
    #: already a complete closed answer (好的, 不用了, yes), instead of waiting out end_silence_ms
    early_end: bool = True


@dataclass
class _Speculation:
    key: tuple[float, int]  # (utterance start, samples): the final utterance must match exactly
    task: asyncio.Task[Transcript]


class _LiveStream:
    """One utterance fed to a streaming recogniser as it is spoken, in order, without blocking the media
    loop: frames queue here and a pump task hands whatever has queued to the decoder in one call."""

    def __init__(self, stream: RecognizerStream, frames: list[PCM]) -> None:
        self.stream = stream
        self.partial = ""  # the recogniser's text for everything decoded so far
        self._feeding = False
        self._held: list[PCM] = []
        self._q: asyncio.Queue[PCM | None] = asyncio.Queue()
        for f in frames:
            self._q.put_nowait(f)
        self._pump_task = asyncio.ensure_future(self._pump())

    @property
    def caught_up(self) -> bool:
        """Every frame pushed so far has been decoded (so `partial` covers all of it)."""
        return self._q.empty() and not self._feeding

    async def _pump(self) -> None:
        done = False
        while not done:
            batch = [await self._q.get()]
            while not self._q.empty():
                batch.append(self._q.get_nowait())
            if batch[-1] is None:
                done = True
            audio = [f for f in batch if f is not None]
            if audio:
                self._feeding = True
                try:
                    self.partial = await self.stream.feed(np.concatenate(audio))
                finally:
                    self._feeding = False

    def push(self, frame: PCM, *, speech: bool = True) -> None:
        """A frame of the utterance. Non-speech frames are held back and decoded only if speech follows:
        the end-of-turn silence (0.6 s of every turn) costs the decoder nothing."""
        if not speech:
            self._held.append(frame)
            return
        for f in self._held:
            self._q.put_nowait(f)
        self._held.clear()
        self._q.put_nowait(frame)

    async def finish(self, *, tail_frames: int = 5) -> Transcript:
        self.stream.finishing()  # the reply waits on what is still queued: let it go first
        for f in self._held[:tail_frames]:  # the same short tail the endpointer keeps in the utterance
            self._q.put_nowait(f)
        self._held.clear()
        self._q.put_nowait(None)
        try:
            await self._pump_task
            return await self.stream.final()
        finally:
            await self.stream.close()

    def abort(self) -> None:
        self._pump_task.cancel()
        asyncio.ensure_future(self.stream.close()).add_done_callback(_consume)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a discarded speculation's (or stream's) failure is not this call's problem


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
        prompt_audio: Callable[[str], Awaitable[PCM]] | None = None,
        transfer: Transferer | None = None,
        vad: Vad | None = None,
    ) -> None:
        self.leg = leg
        self.plan = plan
        self.recognizer = recognizer
        self.classifier = classifier
        self.synthesizer = synthesizer
        self.clock = clock or RealClock()
        self.campaign = campaign
        self.config = config or SessionConfig()
        self._now = now or self.clock.now
        self.runner = Runner(
            plan,
            variables,
            now=self._now().astimezone(self.config.tz),
            calling_window=self.config.calling_window,
        )
        #: loads a recorded prompt (dialplan `wav:`); without it the prompt's text is synthesised
        self.prompt_audio = prompt_audio
        self._speak_t0 = 0.0
        self.turns: list[Turn] = []
        self._heard: asyncio.Queue[Utterance | _Heard | _Dtmf] = asyncio.Queue()
        self._ended = asyncio.Event()
        self._speaking: Say | None = None
        self._barge: PlaybackHandle | None = None
        self._handle: PlaybackHandle | None = None
        self._callee_speaking = False
        self._interrupted_by_words = False
        self._urgent: list[tuple[str, Prediction]] = []
        self._answer_t = 0.0
        self._error: str | None = None
        self._disposition: Disposition | None = None
        self._hangup_by: str | None = None
        self._human_heard = False
        self.amd: AmdDecision | None = None
        self._acoustic: tuple[AmdDecision, float] | None = None  # beep heard, waiting for the words
        #: what the line played before answer (None: answered without reading early media)
        self.early_media: EarlyMediaReport | None = None
        self._early_asr: set[asyncio.Task[None]] = set()
        self.echo_guard: EchoGuard | None = None
        self.vad = vad
        self._spec: _Speculation | None = None
        self._spec_ready: dict[tuple[float, int], asyncio.Future[Transcript]] = {}
        #: utterances transcribed by streaming (vosk) while spoken
        self.streamed = 0
        self.early_ends = 0  # streamed turns ended at a short pause on a complete partial
        #: speculative transcriptions used / discarded (speech resumed)
        self.spec_used = 0
        self.spec_discarded = 0
        self._side_tasks: set[asyncio.Task[None]] = set()
        #: hands the call to a human agent at a transfer node (None: every transfer takes the fallback)
        self.transfer = transfer
        self.transfer_result: TransferResult | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._media_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Timeout | None = None
        #: dialplan `voicemail: leave_message`: the beep / quiet-line detector, and the message once a
        #: voicemail or assistant answered
        vm = plan.voicemail
        self._cue = MessageCue(vm.quiet_s) if vm.action == "leave_message" else None
        self._machine_msg: Say | None = None
        self._cue_ready = asyncio.Event()
        self._leg_gone = asyncio.Event()
        #: how the message was left: "beep" / "quiet" (then played in full), "hung_up" (the line ended
        #: first); None when there was none to leave
        self.voicemail_message: str | None = None

    @property
    def call_id(self) -> str:
        return self.leg.info.call_id

    def _log(self, level: int, msg: str, *args: object) -> None:
        log.log(level, msg, *args, extra={"call_id": self.call_id})

    def _rel(self) -> float:
        return round(self.clock.monotonic() - self._answer_t, 3)

    async def run(self) -> CallOutcome:
        started = self.leg.info.invited_at or self._now()
        early = asyncio.ensure_future(self._early_media()) if self.leg.info.answered_at is None else None
        try:
            await self.leg.wait_answered()
        except TelephonyError as e:
            self._log(logging.INFO, "not answered: %s", e.disposition)
            await self.leg.wait_ended()
            if early is not None:  # its media ends with the leg: the reader finishes the last segment
                await asyncio.wait({early}, timeout=1.0)
            if self._early_asr:  # an announcement that just ended may still be in the recogniser
                await asyncio.wait(self._early_asr, timeout=self.config.early_asr_wait_s)
            # a carrier announcement's words (early media) say more than a vague final response
            disposition = e.disposition
            if self.amd is not None and e.disposition in _VAGUE_FINAL:
                disposition = self.amd.disposition
            return self._outcome(started, disposition=disposition, error=None if e.sip_code else str(e))
        finally:
            if early is not None:
                early.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await early
            for t in self._early_asr:
                t.cancel()
        self._answer_t = self.clock.monotonic()
        if self.amd is not None:  # decided on early media, answered before our CANCEL got there
            with contextlib.suppress(Exception):
                await self.leg.hangup("normal")
            await self.leg.wait_ended()
            return self._outcome(started, disposition=self._disposition or Disposition.FAILED, error=None)
        try:
            async with (
                asyncio.timeout(self.plan.max_duration_s + 30.0) as watchdog,
                asyncio.TaskGroup() as tg,
            ):
                self._tg, self._watchdog = tg, watchdog
                self._media_task = tg.create_task(self._media_in())
                events = tg.create_task(self._events())
                try:
                    await self._dialog()
                    if self._machine_msg is not None:
                        await self._leave_message(self._machine_msg)
                finally:
                    if self._media_task is not None:
                        self._media_task.cancel()
                    events.cancel()
                    for t in list(self._side_tasks):
                        t.cancel()
        except* TimeoutError:
            self.runner.state.end_reason = "watchdog"
            self._hangup_by = self._hangup_by or "system"
            self._log(logging.WARNING, "call exceeded max_duration_s + 30 s: hanging up")
        except* ModelError as eg:
            self._error = f"model failed mid-call: {eg.exceptions[0]}"
            self._disposition = Disposition.FAILED
            self._hangup_by = "system"
            self._log(logging.ERROR, "%s", self._error)
        with contextlib.suppress(Exception):
            await self.leg.hangup("normal")
        try:
            info = await asyncio.wait_for(self.leg.wait_ended(), 40.0)
        except TimeoutError:  # the gateway gives up on its own timers well before this
            info = self.leg.info
            self._log(logging.ERROR, "leg did not end 40 s after hang-up")
        disposition = self._disposition or info.disposition or Disposition.ANSWERED
        return self._outcome(started, disposition=disposition, error=self._error)

    def _outcome(self, started: datetime, *, disposition: Disposition, error: str | None) -> CallOutcome:
        info = self.leg.info
        st = self.runner.state
        # a machine (voicemail, announcement) answering is not a conversation: grade E
        st.stats.connected = info.answered_at is not None and self.amd is None
        g, rule = self.runner.grade()
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
            hangup_by=self._hangup_by or info.hangup_by,
            started_at=started,
            ringing_at=info.ringing_at,
            answered_at=info.answered_at,
            ended_at=info.ended_at or self._now(),
            turns=sorted(self.turns, key=lambda t: t.start_s),
            variables=self.runner.outcome_variables(),
            tags=list(st.tags),
            last_node=st.node,
            error=error,
            transfer=self._transfer_record(),
        )

    def _transfer_record(self) -> TransferRecord | None:
        r = self.transfer_result
        if r is None:
            return None
        return TransferRecord(
            queue=r.queue,
            status=r.status,
            agent=r.agent,
            agent_uri=r.agent_uri,
            agent_call_id=r.agent_call_id,
            wait_s=r.wait_s,
            bridged_s=r.bridged_s,
            ended_by=r.ended_by,
            reason=r.reason,
            attempts=r.attempts,
        )

    # --- early media: before answer -----------------------------------------------------------------

    async def _early_media(self) -> None:
        """Read the line until answer (cancelled then): nothing played before answer is left queued to be
        heard as the callee. Ringback tone and 彩铃 music are only counted; speech (a carrier announcement)
        is transcribed and the text rules' announcements end the attempt with their disposition."""
        mon = EarlyMediaMonitor()
        self.early_media = mon.report
        asked = 0
        try:
            async for frame in self.leg.frames():
                seg = mon.feed(frame)
                if seg is not None and seg.kind == "speech" and asked < self.config.early_asr_max:
                    asked += 1
                    self._early_transcribe(seg.pcm)
        except asyncio.CancelledError:
            mon.flush()  # answered: count what was still playing
            raise
        # the attempt ended before answer, maybe right as its announcement did
        seg = mon.flush()
        if seg is not None and seg.kind == "speech" and asked < self.config.early_asr_max:
            self._early_transcribe(seg.pcm)

    def _early_transcribe(self, pcm: PCM) -> None:
        task = asyncio.ensure_future(self._early_words(pcm))
        self._early_asr.add(task)
        task.add_done_callback(self._early_asr.discard)

    async def _early_words(self, pcm: PCM) -> None:
        try:
            text = (await self.recognizer.transcribe(pcm, sample_rate=8000)).text.strip()
        except Exception as e:  # early media decides nothing then: the call goes on as if not heard
            self._log(logging.WARNING, "transcribing early media failed: %s", e)
            return
        decision = decide(text) if text else None
        if decision is None or decision.kind != "announcement" or self.amd is not None:
            return
        if self.leg.info.answered_at is not None:
            return
        self.amd = decision
        self._disposition = decision.disposition
        # before answer: no time from answer to give it
        self.turns.append(
            Turn(
                speaker="callee",
                text=text,
                start_s=0.0,
                end_s=0.0,
                intent="announcement",
                asr_engine=self.recognizer.name,
            )
        )
        self._log(logging.INFO, "announcement in early media (%r; %s)", text, decision.pattern)
        if self.leg.info.ended_at is None:  # still ringing: cancel it (else the final response came first)
            self._hangup_by = "robot"
            with contextlib.suppress(Exception):
                await self.leg.hangup("normal")

    # --- media in: endpointing, barge-in, AMD --------------------------------------------------------

    def _spawn(self, aw: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(aw)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Task[None]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._error = f"model failed mid-call: {exc}"
            self._disposition = Disposition.FAILED
            self._hangup_by = "system"
            self._log(logging.ERROR, "%s", self._error)
            self._ended.set()

    async def _media_in(self) -> None:
        ep = Endpointer(self.config.endpoint, vad=self.vad.stream() if self.vad is not None else None)
        streaming = self.config.streaming_asr and hasattr(self.recognizer, "stream")
        speculate = self.config.speculative_asr and not hasattr(self.recognizer, "stream")
        live: _LiveStream | None = None
        guard = EchoGuard(self.config.echo) if self.config.echo is not None else None
        self.echo_guard = guard
        playout = self.leg.playout
        acoustic = AcousticAmd() if self.config.acoustic_amd else None
        async for frame in self.leg.frames():
            if guard is not None:
                guard.sync(playout)
                frame = guard.process(frame)
            was_in_speech = ep.in_speech
            ev = ep.feed(frame)
            if (
                isinstance(ev, SpeechPaused)
                and live is not None
                and self.config.early_end
                and live.caught_up
                and is_complete_reply(live.partial)
            ):
                ended = ep.end_now()  # 好的 + a short pause: no need to wait out the end silence
                if ended is not None:
                    ev = ended
                    self.early_ends += 1
            if self._cue is not None and not self._cue_ready.is_set():
                self._cue.feed(frame, ep.frame_speech)
                if self._machine_msg is not None and self._cue.ready:
                    self._cue_ready.set()
            if acoustic is not None:  # beside the endpointer: nothing here waits for it
                if self.amd is not None or self._rel() > self.config.amd_window_s:
                    acoustic = None
                elif (found := acoustic.feed(frame, ep.frame_speech)) is not None:
                    self._acoustic = (found, acoustic.cadence.start_s or 0.0)
                    self._spawn(self._acoustic_deadline())
                    acoustic = None
            if streaming:
                if isinstance(ev, SpeechStarted):
                    rec: Any = self.recognizer
                    live = _LiveStream(rec.stream(sample_rate=8000), ep.utterance_frames)
                elif live is not None and was_in_speech:
                    live.push(frame, speech=ep.frame_speech)
                    if isinstance(ev, Utterance):
                        self._spec_ready[(ev.start_s, len(ev.pcm))] = asyncio.ensure_future(live.finish())
                        self.streamed += 1
                        live = None
                    elif isinstance(ev, SpeechAborted):
                        live.abort()
                        live = None
            if ev is None:
                continue
            if isinstance(ev, SpeechPaused):
                if speculate:
                    self._drop_speculation()
                    task = asyncio.ensure_future(self.recognizer.transcribe(ev.pcm, sample_rate=8000))
                    self._spec = _Speculation((ev.start_s, len(ev.pcm)), task)
                continue
            if self._spec is not None:
                if isinstance(ev, Utterance) and self._spec.key == (ev.start_s, len(ev.pcm)):
                    self._spec_ready[self._spec.key] = self._spec.task  # ended where it paused: use it
                    self._spec = None
                else:
                    self._drop_speculation()  # the callee went on talking: that text is incomplete
            speaking = self._speaking
            self._callee_speaking = isinstance(ev, SpeechStarted)
            if isinstance(ev, SpeechStarted):
                if speaking is not None and self._may_barge(speaking):
                    self.leg.playout.pause()  # the next outbound frame is silence
                    self._barge = self._handle
                    self._log(logging.DEBUG, "speech onset during prompt: playout paused")
            elif isinstance(ev, SpeechAborted):
                self._resume_after_barge("noise")
            elif speaking is not None or self._barge is not None:
                self._spawn(self._heard_during_prompt(ev, speaking))
            else:
                self._barge = None
                await self._heard.put(ev)
        if live is not None:
            live.abort()  # the call ended mid-utterance: free the decoder
        self._ended.set()

    def _drop_speculation(self) -> None:
        spec, self._spec = self._spec, None
        if spec is not None:
            self.spec_discarded += 1
            spec.task.cancel()  # a decode already running in a worker finishes there, unused
            spec.task.add_done_callback(_consume)

    async def _transcribe(self, utt: Utterance) -> Transcript:
        """The utterance's transcript: the speculative one when it was started on exactly this audio."""
        task = self._spec_ready.pop((utt.start_s, len(utt.pcm)), None)
        if task is not None:  # speculative (utterance engine) or streamed (streaming engine)
            if not hasattr(self.recognizer, "stream"):
                self.spec_used += 1
            return await task
        return await self.recognizer.transcribe(utt.pcm, sample_rate=8000)

    def _may_barge(self, prompt: Say, onset: float | None = None) -> bool:
        """Barge-in is allowed on an interruptible prompt once its min_play_s has played."""
        if not (prompt.interruptible and self.config.barge_in):
            return False
        at = self.clock.monotonic() if onset is None else onset
        return at - self._speak_t0 >= prompt.min_play_s

    def _resume_after_barge(self, why: str) -> None:
        if self._barge is not None:
            self._barge = None
            self.leg.playout.resume()
            self._log(logging.DEBUG, "prompt resumed (%s)", why)

    async def _heard_during_prompt(self, utt: Utterance, prompt: Say | None) -> None:
        start = self._rel() - utt.duration_s
        transcript = await self._transcribe(utt)
        text = transcript.text.strip()
        if self._ended.is_set():
            return
        if text and self._in_amd_window() and self._amd_match(text, start):
            return
        if not text or is_backchannel(text):
            self._resume_after_barge("backchannel" if text else "no words")
            if text:
                self.turns.append(
                    Turn(
                        speaker="callee",
                        text=text,
                        start_s=round(max(0.0, start), 3),
                        end_s=self._rel(),
                        intent="backchannel",
                        asr_engine=transcript.engine or self.recognizer.name,
                    )
                )
            return
        onset = self._answer_t + start
        interruptible = prompt is not None and self._may_barge(prompt, onset)
        if self._barge is not None or (interruptible and self._speaking is prompt):
            handle, self._barge = self._barge or self._handle, None
            self._interrupted_by_words = True
            self.leg.clear()
            if handle is not None:
                handle.interrupt()
            self._log(logging.INFO, "barge-in by %r", text)
            await self._heard.put(_Heard(utt, transcript, start))
            return
        # words over a prompt that may not be interrupted: keep them; act only on urgent requests
        pred = await self._classify(text, None)
        self._record_callee(text, pred, start, transcript, node=prompt.node if prompt else None)
        self._human_heard = True
        if pred.intent in _URGENT:
            self._urgent.append((text, pred))

    def _in_amd_window(self) -> bool:
        if self._acoustic is not None:  # a beep after a long greeting: the words decide what it was
            return True
        return not self._human_heard and self._rel() <= self.config.amd_window_s

    async def _acoustic_deadline(self) -> None:
        """The acoustic decision stands when no words decided within acoustic_wait_s of the beep."""
        await self.clock.sleep(self.config.acoustic_wait_s)
        if self._acoustic is not None and self.amd is None and not self._ended.is_set():
            decision, start_s = self._acoustic
            self._end_as_machine(decision, "", start_s, None)

    def _amd_match(self, text: str, start_s: float) -> bool:
        """End the call when the words are a machine's (voicemail, assistant, carrier announcement)."""
        decision = decide(text)
        if decision is None:
            if self._acoustic is None:
                return False
            decision = self._acoustic[0]  # words the rules do not know, then the beep: voicemail
        self._end_as_machine(decision, text, start_s, self.recognizer.name)
        return True

    def _end_as_machine(self, decision: AmdDecision, text: str, start_s: float, asr: str | None) -> None:
        """A machine answered (text rules or the acoustic detector): record it and hang up."""
        self.amd = decision
        self._disposition = decision.disposition
        self._hangup_by = "robot"
        self.turns.append(
            Turn(
                speaker="callee",
                text=text,
                start_s=round(max(0.0, start_s), 3),
                end_s=self._rel(),
                intent=decision.kind,
                asr_engine=asr,
            )
        )
        self._log(logging.INFO, "%s detected (%r; %s)", decision.kind, text, decision.pattern)
        self.leg.clear()
        if self._cue is not None:
            self._machine_msg = self.runner.machine_message(decision.kind)
            if self._machine_msg is not None and self._cue.ready:
                self._cue_ready.set()
        self._ended.set()

    async def _leave_message(self, msg: Say) -> None:
        """Wait for the beep (or a quiet line), speak the plan's message in full, then the call ends.
        The dialog is over (`_ended` is set): only the line going away stops this."""
        gone = self._leg_gone
        await self._race(self._cue_ready.wait(), self.plan.voicemail.beep_wait_s, until=gone)
        if gone.is_set():
            self.voicemail_message = "hung_up"
            return
        cue = (self._cue.ready if self._cue is not None else None) or "timeout"
        pcm = await self._prompt_pcm(msg)
        t0 = self._rel()
        handle = self.leg.play(pcm, label="voicemail")
        await self._race(handle.wait(), until=gone)
        whole = handle.done and not handle.interrupted
        self.voicemail_message = cue if whole else "hung_up"
        self.turns.append(
            Turn(
                speaker="bot",
                text=msg.text if whole else msg.text[: round(len(msg.text) * handle.fraction_played)],
                node="voicemail",
                start_s=t0,
                end_s=self._rel(),
                interrupted=not whole,
            )
        )
        if whole:
            self.runner.state.tags.append("voicemail_message")
        self._log(logging.INFO, "voicemail message after %s: %s", cue, self.voicemail_message)

    async def _events(self) -> None:
        async for ev in self.leg.events():
            if isinstance(ev, DtmfReceived):
                await self._heard.put(_Dtmf(ev.digit))
            elif isinstance(ev, MediaTimeout):
                self._disposition = Disposition.MEDIA_TIMEOUT
            elif isinstance(ev, Ended):
                self._leg_gone.set()
                if self._hangup_by is None:
                    self._hangup_by = ev.by
                self._ended.set()
                return

    # --- dialog ----------------------------------------------------------------------------------------

    async def _race(
        self, aw: Awaitable[T], limit_s: float | None = None, *, until: asyncio.Event | None = None
    ) -> T | None:
        """Await `aw` unless the call ends (`until`, default: the dialog is over) or the limit passes
        first."""
        task = asyncio.ensure_future(aw)
        ended = asyncio.ensure_future((until or self._ended).wait())
        waits: set[asyncio.Future[Any]] = {task, ended}
        if limit_s is not None:
            waits.add(asyncio.ensure_future(self.clock.sleep(limit_s)))
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
            if self._urgent:
                text, pred = self._urgent.pop(0)
                actions = self.runner.on_reply(text, pred)
                continue
            action = actions.pop(0)
            if self.clock.monotonic() > deadline:
                self.runner.state.end_reason = "max_duration"
                self._hangup_by = "robot"
                break
            if isinstance(action, Say):
                if self._interrupted_by_words:
                    continue  # the callee spoke over us: go straight to listening
                await self._say(action)
            elif isinstance(action, Listen):
                self._interrupted_by_words = False
                actions = await self._listen(action) + actions
            elif isinstance(action, Hangup):
                await self._drain_playout()
                self._hangup_by = self._hangup_by or "robot"
                if action.disposition is not Disposition.ANSWERED:
                    self._disposition = action.disposition
                break
            elif isinstance(action, Transfer):
                actions = await self._transfer(action) + actions
                if self.transfer_result is not None and self.transfer_result.status == "bridged":
                    break

    # --- hand-off to a human agent ---------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        """What the agent is whispered before the bridge: name, intent, grade, what was asked."""
        callee = [t for t in self.turns if t.speaker == "callee" and t.text]
        intents = [t.intent for t in callee if t.intent and t.intent != "backchannel"]
        grade, _ = self.runner.grade()
        v = self.runner.state.variables
        return {
            **{k: x for k, x in v.items() if isinstance(x, str | int | float)},
            "name": v.get("name") or v.get("customer_name") or "",
            "phone": v.get("phone") or self.leg.info.target,
            "intent": intents[-1] if intents else "",
            "grade": grade,
            "asked": callee[-1].text if callee else "",
        }

    async def _transfer(self, action: Transfer) -> list[Action]:
        if self.transfer is None:
            self._log(logging.WARNING, "transfer to queue %s: no agents configured, fallback", action.queue)
            self.transfer_result = TransferResult("no_agent", action.queue, reason="no agents configured")
            self._disposition = Disposition.TRANSFER_FAILED
            return self.runner.on_transfer_failed()
        await self._drain_playout()  # "one moment please" is heard in full
        if self._ended.is_set():
            return []
        # the bridge reads the callee's audio: stop our own reader (endpointer, ASR) meanwhile
        await self._stop_media()
        result = await self.transfer.run(
            self.leg,
            action.queue,
            self._summary(),
            self._ended,
            transcript=[t.model_dump(mode="json") for t in sorted(self.turns, key=lambda t: t.start_s)],
        )
        self.transfer_result = result
        if result.status == "bridged":
            self.runner.state.end_reason = "transferred"
            if "transferred" not in self.runner.state.tags:
                self.runner.state.tags.append("transferred")
            self._hangup_by = result.ended_by or self._hangup_by
            return []
        self._disposition = Disposition.TRANSFER_FAILED
        if result.status == "callee_hung_up" or self._ended.is_set():
            return []
        self._log(logging.INFO, "transfer to %s failed (%s): fallback", action.queue, result.reason)
        self._start_media()
        return self.runner.on_transfer_failed()

    async def _stop_media(self) -> None:
        task, self._media_task = self._media_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._watchdog is not None:  # a human conversation is not bound by the dialplan's limit
            loop = asyncio.get_running_loop()
            self._watchdog.reschedule(loop.time() + MAX_BRIDGED_S)

    def _start_media(self) -> None:
        if self._tg is not None and self._media_task is None:
            self._media_task = self._tg.create_task(self._media_in())
        if self._watchdog is not None:
            loop = asyncio.get_running_loop()
            self._watchdog.reschedule(loop.time() + self.plan.max_duration_s + 30.0)

    async def _drain_playout(self) -> None:
        handle = self._handle
        if handle is not None and not handle.done:
            await self._race(handle.wait())

    async def _prompt_pcm(self, action: Say) -> PCM:
        if action.wav and self.prompt_audio is not None:
            try:
                return await self.prompt_audio(action.wav)
            except ModelError as e:  # a broken recording must not end the call: speak the text instead
                self._log(
                    logging.WARNING, "recorded prompt %s unusable (%s): synthesising its text", action.wav, e
                )
        return await self.synthesizer.render(action.text, voice=self.plan.voice)

    async def _say(self, action: Say) -> None:
        pcm = await self._prompt_pcm(action)
        if self._ended.is_set():
            return
        t0 = self._rel()
        self._speak_t0 = self.clock.monotonic()
        self._speaking = action
        handle: PlaybackHandle = self.leg.play(pcm, label=action.node)
        self._handle = handle
        try:
            await self._race(handle.wait())
        finally:
            self._speaking = None
        text = action.text
        if handle.interrupted and handle.frames_total:
            # keep only what the callee heard
            text = text[: max(0, round(len(text) * handle.fraction_played))]
        self.turns.append(
            Turn(
                speaker="bot",
                text=text,
                node=action.node,
                start_s=t0,
                end_s=self._rel(),
                interrupted=handle.interrupted,
            )
        )

    async def _classify(self, text: str, action: Listen | None) -> Prediction:
        ctx = ClassifyContext(
            question=next((t.text for t in reversed(self.turns) if t.speaker == "bot"), None),
            expects=action.expects if action else None,
            language=self.plan.language,
            extra_intents={k: v.examples for k, v in self.plan.intents.items()},
        )
        preds = await self.classifier.classify([text], ctx)
        return preds[0] if preds else Prediction(intent="other", confidence=0.0)

    def _record_callee(
        self, text: str, pred: Prediction, start: float, transcript: Transcript, *, node: str | None
    ) -> None:
        self.turns.append(
            Turn(
                speaker="callee",
                text=text,
                node=node,
                intent=pred.intent,
                confidence=round(pred.confidence, 3),
                emotion=pred.emotion,
                start_s=round(max(0.0, start), 3),
                end_s=self._rel(),
                asr_engine=transcript.engine or self.recognizer.name,
            )
        )
        self._log(logging.INFO, "node %s heard %r -> %s (%.2f)", node, text, pred.intent, pred.confidence)

    async def _next_heard(self, timeout_s: float) -> Utterance | _Heard | _Dtmf | None:
        """The next thing the callee said; None after `timeout_s` without speech. A reply that is still
        being spoken when the timeout passes is waited for."""
        deadline = self.clock.monotonic() + timeout_s
        while not self._ended.is_set():
            remaining = deadline - self.clock.monotonic()
            item = await self._race(self._heard.get(), limit_s=max(0.0, remaining) if remaining > 0 else 0.2)
            if item is not None:
                return item
            if not self._callee_speaking and self.clock.monotonic() >= deadline:
                return None
        return None

    async def _listen(self, action: Listen) -> list[Action]:
        item = await self._next_heard(action.timeout_s)
        if self._ended.is_set():
            return []
        if item is None:
            self._log(logging.INFO, "node %s: no input", action.node)
            return self.runner.on_no_input()
        if isinstance(item, _Dtmf):
            self.turns.append(
                Turn(speaker="callee", text="", dtmf=item.digit, node=action.node, start_s=self._rel())
            )
            return self.runner.on_reply("", None, dtmf=item.digit)
        if isinstance(item, _Heard):
            transcript, start = item.transcript, item.start_s
        else:
            start = self._rel() - item.duration_s
            transcript = await self._transcribe(item)
        text = transcript.text.strip()
        if not text:
            return self.runner.on_no_input()
        if self._in_amd_window() and self._amd_match(text, start):
            return []
        self._human_heard = True
        pred = await self._classify(text, action)
        self._record_callee(text, pred, start, transcript, node=action.node)
        return self.runner.on_reply(text, pred)
