"""/api/v1/handoff: agents' states, the current screen-pops and the SSE feed, with viewers' numbers masked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.call.transfer import HandoffUpdate
from engine.handoff import AgentConfig, QueueConfig
from gateway.store.auth import AuthStore
from gateway.store.sqlite import SqliteStore
from outcall.api.app import create_app
from outcall.runtime import shared_agent_directory, shared_handoff_board
from outcall.settings import load_settings


def test_agents_screen_pops_and_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    store = SqliteStore(tmp_path / "api.db")
    _, viewer = AuthStore(store).create_token("viewer", "viewer-bot")
    _, admin = AuthStore(store).create_token("admin", "admin-bot")
    settings = load_settings(
        db=str(tmp_path / "api.db"),
        agents=[
            AgentConfig(id="zhang", uri="sip:zhang@127.0.0.1:5090"),
            AgentConfig(id="li", uri="sip:li@h"),
        ],
        queues=[QueueConfig(name="advisors")],
    )
    board = shared_handoff_board(settings)
    shared_agent_directory(settings).set_state("li", "offline")  # type: ignore[union-attr]
    board.publish(
        HandoffUpdate(
            type="offered",
            call_id="c1",
            queue="advisors",
            agent="zhang",
            at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
            summary={"name": "王女士", "phone": "13812345678", "intent": "human_agent", "grade": "B"},
            transcript=[{"speaker": "callee", "text": "我要转人工，我电话13812345678", "start_s": 3.0}],
        )
    )
    app = create_app(settings, store)
    try:
        with TestClient(app) as client:
            h = {"Authorization": f"Bearer {viewer}"}
            r = client.get("/api/v1/handoff/agents", headers=h)
            assert r.status_code == 200
            assert {a["id"]: a["state"] for a in r.json()} == {"zhang": "available", "li": "offline"}
            pops = client.get("/api/v1/handoff/screen-pops", headers=h).json()
            assert (
                len(pops) == 1
                and pops[0]["agent"] == "zhang"
                and pops[0]["summary"]["intent"] == "human_agent"
            )
            assert pops[0]["summary"]["phone"] == "138****5678"  # masked for viewers
            assert "13812345678" not in json.dumps(pops, ensure_ascii=False)
            full = client.get(
                "/api/v1/handoff/screen-pops", headers={"Authorization": f"Bearer {admin}"}
            ).json()
            assert full[0]["summary"]["phone"] == "13812345678"
            assert client.get("/api/v1/handoff/screen-pops").status_code == 401
            ah = {"Authorization": f"Bearer {admin}"}
            # an agent logs back in from the console (manager/admin); viewers may not
            put = client.put("/api/v1/handoff/agents/li/state", json={"state": "available"}, headers=ah)
            assert put.status_code == 200 and put.json()["state"] == "available"
            assert (
                client.put("/api/v1/handoff/agents/li/state", json={"state": "busy"}, headers=h).status_code
                == 403
            )
            assert (
                client.put(
                    "/api/v1/handoff/agents/nobody/state", json={"state": "busy"}, headers=ah
                ).status_code
                == 404
            )
            assert (
                client.put(
                    "/api/v1/handoff/agents/li/state", json={"state": "asleep"}, headers=ah
                ).status_code
                == 422
            )
            with client.stream("GET", "/api/v1/handoff/events", headers=h) as s:
                assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                lines = s.iter_lines()
                assert next(lines) == "event: offered"
                data = json.loads(next(lines).removeprefix("data: "))
                assert data["call_id"] == "c1" and data["transcript"][0]["text"].startswith("我要转人工")
        board.publish(board.current["zhang"].model_copy(update={"type": "ended"}))
        assert board.current == {}
    finally:
        store.close()


def test_listen_in_needs_a_bridged_call_and_a_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    store = SqliteStore(tmp_path / "api.db")
    _, viewer = AuthStore(store).create_token("viewer", "viewer-bot")
    _, manager = AuthStore(store).create_token("manager", "manager-bot")
    app = create_app(load_settings(db=str(tmp_path / "api.db")), store)
    try:
        with TestClient(app) as client:
            url = "/api/v1/handoff/calls/nope/listen"
            body = {"uri": "sip:boss@127.0.0.1:5099"}
            assert (
                client.post(url, json=body, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
            )
            r = client.post(url, json=body, headers={"Authorization": f"Bearer {manager}"})
            assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
            r = client.post(url, json={"uri": ""}, headers={"Authorization": f"Bearer {manager}"})
            assert r.status_code == 422
    finally:
        store.close()
