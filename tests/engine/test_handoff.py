"""Agents and queues: longest-idle selection with skills, working hours, wrap-up, config errors."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from engine.clock import VirtualClock
from engine.errors import ConfigError
from engine.handoff import AgentConfig, AgentDirectory, QueueConfig, WorkingHours

MONDAY_10_SHANGHAI = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def _dir(clock: VirtualClock, **queue: object) -> AgentDirectory:
    agents = [
        AgentConfig(id="a1", uri="sip:a1@pbx", skills=["zh", "vip"], wrap_up_s=10),
        AgentConfig(id="a2", uri="sip:a2@pbx", skills=["zh"]),
        AgentConfig(id="a3", uri="sip:a3@pbx", skills=["zh", "vip"], state="offline"),
    ]
    q = QueueConfig.model_validate({"name": "sales", **queue})
    return AgentDirectory(agents=agents, queues=[q], clock=clock)


async def test_longest_idle_agent_with_the_skills_is_picked() -> None:
    clock = VirtualClock(MONDAY_10_SHANGHAI)
    d = _dir(clock)
    await clock.advance(5)
    d.set_state("a3", "available")  # idle for 0 s; a1/a2 idle for 5 s
    pick = d.select("sales")
    assert pick is not None and pick.agent == "a1" and pick.uri == "sip:a1@pbx"
    assert d.select("sales", exclude={"a1"}).agent == "a2"  # type: ignore[union-attr]
    d2 = _dir(clock, skills=["vip"])
    d2.set_state("a3", "available")
    d2.reserve(d2.select("sales"))  # type: ignore[arg-type]
    assert d2.state("a1") == "busy"
    assert d2.select("sales").agent == "a3"  # type: ignore[union-attr]
    d2.set_state("a3", "busy")
    assert d2.select("sales") is None and "no available agent" in d2.why_not


async def test_wrap_up_then_available_again_at_the_back_of_the_line() -> None:
    clock = VirtualClock(MONDAY_10_SHANGHAI)
    d = _dir(clock, agents=["a1", "a2"])
    pick = d.select("sales")
    assert pick is not None and pick.agent == "a1"
    d.reserve(pick)
    d.release(pick, talked=True)
    assert d.state("a1") == "wrap_up"
    assert d.select("sales").agent == "a2"  # type: ignore[union-attr]
    await clock.advance(10)
    assert d.state("a1") == "available"
    # a2 has been idle longer than a1 (who just finished)
    assert d.select("sales").agent == "a2"  # type: ignore[union-attr]
    # an agent who did not answer keeps their place
    p2 = d.select("sales")
    assert p2 is not None
    d.reserve(p2)
    d.release(p2, talked=False)
    assert d.state("a2") == "available" and d.select("sales").agent == "a2"  # type: ignore[union-attr]


async def test_working_hours_in_the_queue_time_zone() -> None:
    clock = VirtualClock(MONDAY_10_SHANGHAI)
    hours = WorkingHours(start=time(9), end=time(12), days=[1, 2, 3, 4, 5], tz="Asia/Shanghai")
    d = _dir(clock, hours=hours)
    assert d.select("sales") is not None  # Monday 10:00 in Shanghai
    await clock.advance(2.5 * 3600)  # 12:30
    assert d.select("sales") is None and "working hours" in d.why_not
    await clock.advance(5 * 86400 - 2.5 * 3600)  # Saturday 10:00
    assert d.select("sales") is None
    night = WorkingHours(start=time(22), end=time(6), tz="UTC")
    assert night.open_at(datetime(2026, 1, 5, 23, 0, tzinfo=UTC))
    assert night.open_at(datetime(2026, 1, 5, 5, 0, tzinfo=UTC))
    assert not night.open_at(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))


def test_queue_number_and_config_errors() -> None:
    clock = VirtualClock(MONDAY_10_SHANGHAI)
    d = AgentDirectory(queues=[QueueConfig(name="cc", uri="sip:4008@cc")], clock=clock)
    pick = d.select("cc")
    assert pick is not None and pick.agent is None and pick.label == "sip:4008@cc"
    assert d.select("nope") is None and "no queue named 'nope'" in d.why_not
    with pytest.raises(ConfigError, match="unknown agents"):
        AgentDirectory(queues=[QueueConfig(name="q", agents=["ghost"])])
    with pytest.raises(ConfigError, match="defined twice"):
        AgentDirectory(agents=[AgentConfig(id="x", uri="sip:x@h"), AgentConfig(id="x", uri="sip:y@h")])
    with pytest.raises(ValidationError, match="not both"):
        QueueConfig(name="q", agents=["a"], uri="sip:1@h")
    with pytest.raises(ValidationError, match="time zone"):
        WorkingHours(tz="Mars/Olympus")
    with pytest.raises(ValidationError, match="ISO weekdays"):
        WorkingHours(days=[0])
