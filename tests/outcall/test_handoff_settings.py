"""[[agents]] and [[queues]] in the TOML build the transfer directory."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from engine.errors import ConfigError
from outcall.runtime import agent_directory, shared_agent_directory
from outcall.settings import load_settings

TOML = """
[[agents]]
id = "zhang"
uri = "sip:zhang@127.0.0.1:5090"
skills = ["zh", "course"]
wrap_up_s = 20

[[agents]]
id = "li"
uri = "sip:li@127.0.0.1:5093"
skills = ["zh"]
state = "offline"

[[queues]]
name = "advisors"
agents = ["zhang", "li"]
skills = ["zh"]
timeout_s = 25
hold_prompt = "正在为您转接，请稍候。"
whisper = "{name} 意向{intent} {grade}级 问{asked}"
[queues.hours]
start = "09:00"
end = "21:00"
days = [1, 2, 3, 4, 5, 6]
tz = "Asia/Shanghai"

[[queues]]
name = "callcentre"
uri = "sip:4008001234@127.0.0.1:5070"
"""


def test_agents_and_queues_from_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "outcall.toml"
    toml.write_text(TOML, encoding="utf-8")
    monkeypatch.setenv("OUTCALL_CONFIG", str(toml))
    s = load_settings()
    assert [a.id for a in s.agents] == ["zhang", "li"]
    q = s.queues[0]
    assert q.timeout_s == 25 and q.hours is not None and q.hours.end == time(21, 0)
    d = agent_directory(s)
    assert d is not None
    assert d.state("li") == "offline" and set(d.queues) == {"advisors", "callcentre"}
    cc = d.select("callcentre")
    assert cc is not None and cc.uri == "sip:4008001234@127.0.0.1:5070" and cc.agent is None
    # every call of the process sees the same agents' states
    shared = shared_agent_directory(s)
    assert shared is not None and shared is shared_agent_directory(s) and shared is not d
    shared.set_state("zhang", "busy")
    assert shared_agent_directory(s).state("zhang") == "busy"  # type: ignore[union-attr]


def test_bad_queue_config_names_the_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "outcall.toml"
    toml.write_text('[[queues]]\nname = "q"\n[queues.hours]\ntz = "Nowhere/City"\n', encoding="utf-8")
    monkeypatch.setenv("OUTCALL_CONFIG", str(toml))
    with pytest.raises(ConfigError, match=r"OUTCALL_QUEUES_0_HOURS_TZ.*Nowhere/City"):
        load_settings()
    toml.write_text('[[queues]]\nname = "q"\nagents = ["ghost"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown agents"):
        agent_directory(load_settings())
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    assert agent_directory(load_settings()) is None
