"""Request (XCreate/XUpdate) and response (XPublic) models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.campaign.calendar import CallingHours
from engine.campaign.policy import FrequencyCap, RetryPolicy
from engine.campaign.scheduler import CampaignConfig
from engine.outcome import Turn


class CampaignCreate(CampaignConfig):
    """A new campaign (draft). Every CampaignConfig field; only name and dialplan are required."""


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dialplan: str | None = None
    timezone: str | None = None
    trunk: str | None = None
    ai_capacity: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    calls_per_second: float | None = Field(None, gt=0)
    trunk_channels: int | None = Field(None, ge=1)
    pacing: Literal["predictive", "strict"] | None = None
    initial_answer_rate: float | None = Field(None, gt=0, le=1)
    consent_required: bool | None = None
    variants: dict[str, float] | None = None
    retry: RetryPolicy | None = None
    hours: CallingHours | None = None
    frequency_cap: FrequencyCap | None = None
    ring_timeout: float | None = Field(None, gt=0)
    budget: float | None = Field(None, gt=0, description="raise the spend cap to resume a paused campaign")
    record: bool | None = None


class CampaignPublic(BaseModel):
    name: str
    status: str
    created_at: datetime
    config: CampaignConfig


class CampaignStats(BaseModel):
    campaign: str
    status: str
    contacts: dict[str, int]
    dispositions: dict[str, int]
    attempts: int
    connect_rate: float | None
    variants: dict[str, Any]
    calls: dict[str, Any] = Field(description="outcome stats of this campaign (as GET /stats)")


class ContactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(description="any common form: 13812345678, +86 138 1234 5678, 010-12345678")
    name: str | None = None
    timezone: str | None = None
    consent: bool | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["now", "normal"] | int = Field(
        "normal", description="'now' (speed-to-lead: dialed first, as soon as a line is free), or a number"
    )


class ContactPublic(BaseModel):
    id: int
    phone: str
    name: str | None = None
    timezone: str | None = None
    consent: bool | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    variant: str | None = None
    state: str
    attempts: int = 0
    last_disposition: str | None = None
    last_call_id: str | None = None
    next_at: datetime | None = None


class InvalidRow(BaseModel):
    row: int
    reason: str


class ImportReportPublic(BaseModel):
    imported: int
    duplicates: int
    invalid: list[InvalidRow]
    invalid_count: int
    rows: int


class DncCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str
    campaign: str = Field("", description="'' for the global list")
    reason: str = ""


class DncPublic(BaseModel):
    phone: str
    campaign: str
    reason: str | None = None
    added_at: datetime


class DialplanSummary(BaseModel):
    name: str
    source: Literal["shipped", "custom"]
    version: str | None = None
    language: str | None = None
    error: str | None = None


class DialplanPublic(DialplanSummary):
    yaml: str
    warnings: list[str] = Field(default_factory=list)


class DialplanTestRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tests_yaml: str | None = Field(
        None,
        description="conversation tests (dialplans/tests format); default: the shipped tests of this name",
    )


class TestCasePublic(BaseModel):
    name: str
    ok: bool
    failures: list[str]
    turns: list[dict[str, str | None]]


class DialplanTestResult(BaseModel):
    dialplan: str
    version: str
    classifier: str
    ok: bool
    passed: int
    total: int
    cases: list[TestCasePublic]
    notes: list[str]


class CallSummary(BaseModel):
    call_id: str
    campaign: str | None = None
    phone: str
    disposition: str
    grade: str
    sip_code: int | None = None
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime
    talk_s: float
    dialplan: str | None = None


class Transcript(BaseModel):
    call_id: str
    turns: list[Turn]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "manager", "designer", "viewer"]
    name: str | None = Field(None, max_length=80)


class TokenPublic(BaseModel):
    id: str
    name: str
    role: str
    created_at: str | None = None
    last_used_at: str | None = None
    revoked: bool = False


class TokenCreated(TokenPublic):
    token: str = Field(description="shown once; only its SHA-256 is stored")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    status: str
    version: str
    uptime_s: float


class ConvertedResult(BaseModel):
    campaign: str
    phone: str
    stopped: int = Field(description="pending attempts stopped (0: nothing was pending)")


class DialplanProblem(BaseModel):
    line: int
    col: int
    message: str
    severity: Literal["error", "warning"]


class DialplanValidation(BaseModel):
    ok: bool
    problems: list[DialplanProblem]
    graph: dict[str, Any] | None = Field(None, description="start, nodes, edges (when the plan is valid)")


class SimulationRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turns: list[str] = Field(default_factory=list, max_length=100, description="callee turns so far")
    variables: dict[str, Any] = Field(default_factory=dict)
    variant: str | None = None


class SimulatedLine(BaseModel):
    speaker: str
    text: str
    node: str | None = None
    kind: str = ""
    intent: str | None = None
    confidence: float | None = None
    emotion: str | None = None
    interrupted: bool = False


class SimulationResult(BaseModel):
    lines: list[SimulatedLine]
    node: str | None
    ended: bool
    disposition: str | None
    tags: list[str]
    variables: dict[str, Any]
    grade: str
    grade_rule: str | None
    classifier: str


class Me(BaseModel):
    actor: str
    role: str
