"""The CallOutcome record: what one attempt produced, for the store, the CRM and the retry policy."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from engine.dispositions import CarrierStatus, Disposition, carrier_status
from engine.events import HangupBy

OUTCOME_SCHEMA_VERSION = "1.1"

Grade = Literal["A", "B", "C", "D", "E"]


class Turn(BaseModel):
    """One side's turn of the conversation."""

    speaker: Literal["bot", "callee"]
    text: str
    node: str | None = None
    intent: str | None = None
    confidence: float | None = None
    emotion: str | None = None
    start_s: float = Field(description="seconds from answer")
    end_s: float | None = None
    interrupted: bool = False
    dtmf: str | None = None
    asr_engine: str | None = None


class TransferRecord(BaseModel):
    """The hand-off to a human agent (转人工), when the dialplan reached a transfer node."""

    queue: str
    status: Literal["bridged", "no_agent", "callee_hung_up", "failed"]
    agent: str | None = Field(None, description="agent id (or the queue number dialled)")
    agent_uri: str | None = None
    agent_call_id: str | None = None
    wait_s: float = Field(0.0, description="seconds the callee waited on hold")
    bridged_s: float = Field(0.0, description="seconds the callee talked with the agent")
    ended_by: Literal["agent", "callee"] | None = None
    reason: str | None = None
    attempts: list[dict[str, Any]] = Field(default_factory=list, description="agents dialled, in order")


class CallOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = OUTCOME_SCHEMA_VERSION
    outcome_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    call_id: str
    campaign: str | None = None
    contact_id: str | None = None
    attempt: int = 1
    to: str
    caller_id: str | None = None
    trunk: str | None = None
    dialplan: str | None = None
    dialplan_version: str | None = None
    disposition: Disposition
    sip_code: int | None = None
    q850_cause: int | None = None
    reason: str | None = None
    grade: Grade = "E"
    grade_rule: str | None = None
    hangup_by: HangupBy | None = None
    started_at: datetime
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime
    turns: list[Turn] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    last_node: str | None = None
    recording: str | None = None
    billed_s: int = Field(0, description="billed seconds: talk time rounded up per the trunk's tariff")
    cost: float = Field(0.0, description="what the trunk charges for this call (tariff currency)")
    error: str | None = None
    transfer: TransferRecord | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def carrier_status(self) -> CarrierStatus:
        return carrier_status(self.disposition)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float:
        return round(max(0.0, (self.ended_at - self.started_at).total_seconds()), 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def talk_s(self) -> float:
        if self.answered_at is None:
            return 0.0
        return round(max(0.0, (self.ended_at - self.answered_at).total_seconds()), 3)


def outcome_json_schema() -> dict[str, Any]:
    schema = CallOutcome.model_json_schema(mode="serialization")
    schema["$id"] = f"https://outcall.dev/schema/outcome/{OUTCOME_SCHEMA_VERSION}.json"
    schema["title"] = "CallOutcome"
    return schema
