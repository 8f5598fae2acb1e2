"""Human agents and queues for the hand-off (转人工): who may take a transferred call, and when.

Pure model, no I/O: `AgentDirectory` keeps each agent's state (available, busy, offline, wrap_up) and
picks the longest-idle available agent with a queue's skills inside the queue's working hours; a queue
that names a call-centre queue number (`uri`) is dialled as is. Time comes from the injected Clock.

    directory = AgentDirectory(agents=[AgentConfig(id="a1", uri="sip:a1@pbx")],
                               queues=[QueueConfig(name="sales", agents=["a1"])], clock=clock)
    pick = directory.select("sales", exclude=set())   # AgentPick | None (reason in directory.why_not)
    directory.reserve(pick) ... directory.release(pick)   # busy while dialled/bridged, then wrap-up
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.clock import Clock, RealClock
from engine.errors import ConfigError

log = logging.getLogger("outcall.handoff")

AgentState = Literal["available", "busy", "offline", "wrap_up"]

DEFAULT_HOLD_PROMPT = "正在为您转接人工客服，请稍候。"
DEFAULT_WHISPER = "{name}，意向{intent}，评级{grade}，问：{asked}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentConfig(_Strict):
    """A human agent: a SIP endpoint (softphone) that can take transferred calls."""

    id: str = Field(min_length=1)
    uri: str = Field(description="what to dial: sip:agent@host[:port] or a number on the trunk")
    name: str | None = None
    skills: list[str] = Field(default_factory=list)
    state: AgentState = "available"
    wrap_up_s: float = Field(30.0, ge=0, description="after a bridged call, seconds before the next")
    trunk: str | None = Field(None, description="trunk to dial through (None: the default / direct URI)")


class WorkingHours(_Strict):
    """When a queue takes calls: `start`-`end` local time on ISO weekdays `days` (1 = Monday)."""

    start: time = time(9, 0)
    end: time = time(18, 0)
    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    tz: str = "Asia/Shanghai"

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        bad = [d for d in v if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"days must be ISO weekdays 1 (Monday) .. 7 (Sunday), got {bad}")
        return v

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v

    def open_at(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.tz))
        if local.isoweekday() not in self.days:
            return False
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # over midnight


class QueueConfig(_Strict):
    """Where a dialplan's transfer node sends the call: named agents (or all agents with the skills), or
    an existing call-centre queue number (`uri`)."""

    name: str = Field(min_length=1)
    agents: list[str] = Field(default_factory=list, description="agent ids; empty: any agent with skills")
    uri: str | None = Field(None, description="a call-centre queue number/URI dialled instead of agents")
    trunk: str | None = None
    skills: list[str] = Field(default_factory=list, description="an agent needs all of these")
    hours: WorkingHours | None = Field(None, description="None: always open")
    timeout_s: float = Field(30.0, gt=0, description="seconds on hold before the fallback node")
    ring_timeout_s: float = Field(15.0, gt=0, description="seconds one agent may ring before the next")
    hold_prompt: str = DEFAULT_HOLD_PROMPT
    hold_wav: str | None = Field(None, description="recorded hold music/prompt, looped")
    whisper: str = Field(
        DEFAULT_WHISPER,
        description="one line said to the agent only before bridging: {name} {intent} {grade} {asked} "
        "{phone} and any call variable",
    )

    @model_validator(mode="after")
    def _target(self) -> QueueConfig:
        if self.uri and self.agents:
            raise ValueError(f"queue {self.name!r}: give either agents or a queue number (uri), not both")
        return self


@dataclass
class Agent:
    config: AgentConfig
    state: AgentState
    idle_since: float
    wrap_up_until: float = 0.0
    calls: int = 0

    @property
    def id(self) -> str:
        return self.config.id


@dataclass(frozen=True)
class AgentPick:
    """Who to dial for one transfer: an agent of the directory, or a queue number (agent None)."""

    queue: QueueConfig
    uri: str
    agent: str | None
    trunk: str | None

    @property
    def label(self) -> str:
        return self.agent or self.uri


class AgentDirectory:
    def __init__(
        self,
        *,
        agents: Iterable[AgentConfig] = (),
        queues: Iterable[QueueConfig] = (),
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        now = self.clock.monotonic()
        self.agents: dict[str, Agent] = {}
        for a in agents:
            if a.id in self.agents:
                raise ConfigError(f"agent id {a.id!r} defined twice", hint="give every [[agents]] an own id")
            self.agents[a.id] = Agent(a, a.state, idle_since=now)
        self.queues: dict[str, QueueConfig] = {}
        for q in queues:
            if q.name in self.queues:
                raise ConfigError(f"queue {q.name!r} defined twice", hint="give every [[queues]] an own name")
            unknown = [x for x in q.agents if x not in self.agents]
            if unknown:
                raise ConfigError(
                    f"queue {q.name!r} names unknown agents {unknown}",
                    hint=f"defined agents: {', '.join(self.agents) or '(none)'}",
                )
            self.queues[q.name] = q
        #: why the last select() found nobody (for logs and the outcome)
        self.why_not: str = ""

    def queue(self, name: str) -> QueueConfig | None:
        return self.queues.get(name)

    def state(self, agent_id: str) -> AgentState:
        a = self._agent(agent_id)
        self._expire_wrap_up(a)
        return a.state

    def set_state(self, agent_id: str, state: AgentState) -> None:
        """An agent logs in/out or is set busy from the console."""
        a = self._agent(agent_id)
        if state == "available" and a.state != "available":
            a.idle_since = self.clock.monotonic()
        a.state = state

    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise ConfigError(f"no agent {agent_id!r}", hint=f"agents: {', '.join(self.agents)}") from None

    def _expire_wrap_up(self, a: Agent) -> None:
        if a.state == "wrap_up" and self.clock.monotonic() >= a.wrap_up_until:
            a.state = "available"
            a.idle_since = a.wrap_up_until

    def is_open(self, queue: QueueConfig) -> bool:
        return queue.hours is None or queue.hours.open_at(self.clock.now())

    def select(self, queue_name: str, *, exclude: Iterable[str] = ()) -> AgentPick | None:
        """The longest-idle available agent of the queue with all its skills (None: nobody now)."""
        q = self.queues.get(queue_name)
        if q is None:
            self.why_not = f"no queue named {queue_name!r}"
            return None
        if not self.is_open(q):
            self.why_not = f"queue {q.name} is outside its working hours"
            return None
        if q.uri:
            return AgentPick(q, q.uri, None, q.trunk)
        skip = set(exclude)
        names = q.agents or list(self.agents)
        best: Agent | None = None
        for name in names:
            a = self.agents[name]
            self._expire_wrap_up(a)
            if a.state != "available" or a.id in skip or not set(q.skills) <= set(a.config.skills):
                continue
            if best is None or a.idle_since < best.idle_since:
                best = a
        if best is None:
            self.why_not = f"no available agent in queue {q.name}"
            return None
        return AgentPick(q, best.config.uri, best.id, best.config.trunk or q.trunk)

    def reserve(self, pick: AgentPick) -> None:
        """The agent is being dialled or talking: nobody else may pick them."""
        if pick.agent is not None:
            a = self.agents[pick.agent]
            a.state = "busy"

    def release(self, pick: AgentPick, *, talked: bool) -> None:
        """The transfer leg ended: after a conversation the agent wraps up, else is free again at once
        (keeping their place in the idle order)."""
        if pick.agent is None:
            return
        a = self.agents[pick.agent]
        if a.state != "busy":
            return  # set offline from the console meanwhile
        now = self.clock.monotonic()
        if talked:
            a.calls += 1
            a.idle_since = now + a.config.wrap_up_s
            if a.config.wrap_up_s > 0:
                a.state = "wrap_up"
                a.wrap_up_until = now + a.config.wrap_up_s
                return
        a.state = "available"

    def snapshot(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for a in self.agents.values():
            self._expire_wrap_up(a)
            out.append({"id": a.id, "state": a.state, "calls": a.calls, "skills": list(a.config.skills)})
        return out
