"""Pydantic event models shared by gateway, engine and outcome sinks. Each has a `type` literal."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.dispositions import Disposition

HangupBy = Literal["callee", "robot", "system", "agent"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)
    call_id: str
    at: float = Field(description="monotonic seconds of the clock that produced the event")


class Ringing(_Event):
    type: Literal["ringing"] = "ringing"
    sip_code: int = 180


class EarlyMedia(_Event):
    """A provisional response carried SDP: ringback, 彩铃 or a carrier announcement may follow as audio."""

    type: Literal["early_media"] = "early_media"
    sip_code: int = 183


class Answered(_Event):
    type: Literal["answered"] = "answered"


class DtmfReceived(_Event):
    type: Literal["dtmf"] = "dtmf"
    digit: str
    method: Literal["rfc4733", "info", "inband"] = "rfc4733"
    duration_ms: int | None = None


class MediaTimeout(_Event):
    type: Literal["media_timeout"] = "media_timeout"
    silent_s: float


class Ended(_Event):
    """The leg is over, answered or not."""

    type: Literal["ended"] = "ended"
    disposition: Disposition
    by: HangupBy
    sip_code: int | None = None
    reason: str | None = None
    q850_cause: int | None = None


LegEvent = Annotated[
    Ringing | EarlyMedia | Answered | DtmfReceived | MediaTimeout | Ended,
    Field(discriminator="type"),
]
