"""The daily report (日报) posted to a WeCom group robot: a loopback qyapi checks the robot key and the
markdown it receives; an unknown robot is a clear 422."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.store.auth import AuthStore
from gateway.store.sqlite import SqliteStore
from outcall.api.app import create_app
from outcall.settings import load_settings
from tests.gateway.fake_http import FakeHttp
from tests.gateway.fake_wecom import FakeWecom
from tests.outcall.api.conftest import outcome


async def test_report_posted_to_the_group_robot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    fake = FakeWecom()
    async with FakeHttp(fake.handle) as srv:
        settings = load_settings(
            db=str(tmp_path / "o.db"),
            dialplans_dir=str(tmp_path / "dp"),
            wecom_api_base=srv.url,
            wecom_robot_keys={"ops": "robot-key-1", "stale": "no-such-key"},
        )
        store = SqliteStore(settings.db)
        token = AuthStore(store).create_token("manager", "m")[1]
        app = create_app(settings, store)
        h = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post(
                "/api/v1/campaigns", json={"name": "spring", "dialplan": "trial-class-zh"}, headers=h
            )
            assert r.status_code == 201, r.text
            for i in (1, 2):
                store.save_outcome_sync(outcome(i))
            r = await c.post("/api/v1/campaigns/spring/report/post?robot=ops&day=2026-03-02", headers=h)
            assert r.status_code == 202, r.text
            (msg,) = fake.robot_messages
            assert msg["msgtype"] == "markdown"
            assert msg["markdown"]["content"].startswith("### 外呼日报 · spring · 2026-03-02")
            assert "接通 2 通" in msg["markdown"]["content"]
            bad = await c.post("/api/v1/campaigns/spring/report/post?robot=nobody", headers=h)
            assert bad.status_code == 422 and "ops" in bad.json()["detail"]
            refused = await c.post("/api/v1/campaigns/spring/report/post?robot=stale", headers=h)
            assert refused.status_code == 502  # the service refused the key; nothing was posted
            assert len(fake.robot_messages) == 1
        store.close()
