"""Ports: the shapes the engine needs from the outside world. Adapters in gateway/ and models/ fill them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from engine.audio import PCM
from engine.call.playback import PlaybackHandle, Playout
from engine.dispositions import Disposition
from engine.events import HangupBy, LegEvent


@dataclass
class LegInfo:
    """What the gateway learned about a leg; filled in as the call progresses."""

    call_id: str
    target: str
    caller_id: str | None = None
    trunk: str | None = None
    invited_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    sip_code: int | None = None
    reason: str | None = None
    q850_cause: int | None = None
    disposition: Disposition | None = None
    hangup_by: HangupBy | None = None
    retry_after: float | None = None  # seconds, from a failure response's Retry-After (503 back-off)
    codec: str | None = None
    remote_media: str | None = None
    stats: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class CallLeg(Protocol):
    """One call leg: SIP dialog plus RTP media, as the engine sees it."""

    @property
    def info(self) -> LegInfo: ...

    @property
    def playout(self) -> Playout: ...

    def events(self) -> AsyncIterator[LegEvent]:
        """Leg events in order (ringing, early media, answered, dtmf, media timeout, ended). One reader."""
        ...

    def frames(self) -> AsyncIterator[PCM]:
        """Inbound audio, one 20 ms frame per tick (silence when packets stop), early media included.
        Ends when the leg ends. One reader."""
        ...

    def play(self, pcm: PCM, *, label: str | None = None) -> PlaybackHandle: ...

    def clear(self) -> None:
        """Drop queued outbound audio within one frame."""
        ...

    async def send_dtmf(self, digits: str) -> None: ...

    async def wait_answered(self) -> None:
        """Return once answered; raise TelephonyError with the disposition if the leg failed."""
        ...

    async def hangup(self, reason: str = "normal") -> None:
        """End the leg (CANCEL before answer, BYE after). Idempotent."""
        ...

    async def wait_ended(self) -> LegInfo: ...


class LineProvider(Protocol):
    async def originate(
        self,
        target: str,
        *,
        caller_id: str | None = None,
        trunk: str | None = None,
        headers: Mapping[str, str] | None = None,
        ring_timeout: float = 45.0,
        call_id: str | None = None,
    ) -> CallLeg:
        """Send the INVITE and return the leg at once (dialing). Raises ConfigError for bad targets."""
        ...


class Transcript(BaseModel):
    text: str
    confidence: float = 1.0
    language: str | None = None
    engine: str = ""
    latency_ms: float | None = None


class Recognizer(Protocol):
    """Speech to text. Utterance engines (whisper) and streaming engines (vosk) both transcribe a
    VAD-gated utterance; streaming engines also offer `stream()`."""

    name: str

    async def transcribe(self, pcm: PCM, *, sample_rate: int = 8000) -> Transcript: ...


class RecognizerStream(Protocol):
    async def feed(self, pcm: PCM) -> str:
        """Feed audio, return the current partial text."""
        ...

    def finishing(self) -> None:
        """Hint that the utterance has ended and final() follows: a recogniser that shares its decoder
        between calls may put this stream's remaining work first (the caller's reply waits on it)."""
        ...

    async def final(self) -> Transcript: ...

    async def close(self) -> None: ...


class StreamingRecognizer(Recognizer, Protocol):
    def stream(self, *, sample_rate: int = 8000) -> RecognizerStream: ...


class VoiceActivity(Protocol):
    """One call's stream through a VAD model: the speech probability (0..1) of each 20 ms 8 kHz frame.
    Stateful (recurrent models): frames in order; `reset()` when the stream restarts after a gap."""

    def probability(self, frame: PCM) -> float: ...

    def reset(self) -> None: ...


class Vad(Protocol):
    """A voice activity model shared by all calls; `stream()` gives one call its own state."""

    name: str

    def stream(self) -> VoiceActivity: ...


class Synthesizer(Protocol):
    name: str

    async def render(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> PCM:
        """8 kHz mono int16 PCM for text; implementations cache static prompts."""
        ...


class ClassifyContext(BaseModel):
    question: str | None = None
    expects: str | None = Field(default=None, description="'yes_no' or 'open'")
    language: str | None = None
    extra_intents: dict[str, list[str]] = Field(default_factory=dict)


class Prediction(BaseModel):
    intent: str
    confidence: float
    emotion: str = "neutral"
    emotion_confidence: float = 1.0
    source: str = "model"


class Classifier(Protocol):
    name: str

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]: ...


class OutcomeSink(Protocol):
    async def deliver(self, outcome: object) -> None:
        """Deliver a CallOutcome; idempotent by outcome id."""
        ...
