"""`outcall serve`: the scheduler dials running campaigns (fake dialer, real SQLite); the process answers
/healthz quickly and serves authenticated calls (subprocess on a free port)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.campaign.calendar import CallingHours
from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig, CampaignStatus, Claim, Dialer, Seat
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.store.sqlite import SqliteStore
from outcall.serve import Scheduler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_scheduler_dials_running_campaigns_and_speed_to_lead(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    always = CallingHours.every_day(dtime(0, 0), dtime.max, holidays=True)
    store.create_campaign_sync(CampaignConfig(name="spring", dialplan="trial-class-zh", hours=always))
    now = datetime.now(UTC).timestamp()
    store.add_contacts_sync(
        "spring", [Contact(campaign="spring", phone=f"+861380000000{i}") for i in range(3)], now=now
    )
    dialed: asyncio.Queue[str] = asyncio.Queue()
    in_call = asyncio.Event()
    release = asyncio.Event()

    async def make_dialer(name: str) -> Dialer:
        async def dial(claim: Claim, seat: Seat) -> Any:
            seat.answered()
            if claim.contact.phone.endswith("0"):
                in_call.set()
                await release.wait()
            t = datetime.now(UTC)
            await dialed.put(claim.contact.phone)
            return CallOutcome(
                call_id=f"c-{claim.attempt_id}",
                campaign=name,
                to=claim.contact.phone,
                disposition=Disposition.ANSWERED,
                grade="B",
                started_at=t,
                answered_at=t,
                ended_at=t,
            )

        return dial

    sched = Scheduler(store, make_dialer, poll_s=30.0, max_idle_s=0.5, follow_s=0.5)
    task = asyncio.create_task(sched.run())
    try:
        assert await sched.poll_once() == []  # a draft campaign is not dialed
        store.set_status_sync("spring", CampaignStatus.RUNNING)
        sched.wake()
        await asyncio.wait_for(in_call.wait(), 5)
        assert sched.running() == ["spring"] and sched.active_calls() >= 1
        release.set()
        got = {await asyncio.wait_for(dialed.get(), 5) for _ in range(3)}
        assert len(got) == 3
        # speed-to-lead: a contact added while the campaign is idle is dialed within 5 s
        t0 = time.monotonic()
        store.add_contacts_sync(
            "spring",
            [Contact(campaign="spring", phone="+8613900000001", priority=100)],
            now=datetime.now(UTC).timestamp(),
        )
        sched.wake()
        assert await asyncio.wait_for(dialed.get(), 5) == "+8613900000001"
        assert time.monotonic() - t0 < 5
        states = store.contact_states_sync("spring")
        assert states.get("pending", 0) == 0 and sum(states.values()) == 4
        assert len(await store.list_outcomes(campaign="spring")) == 4
        store.set_status_sync("spring", CampaignStatus.STOPPED)
        await asyncio.wait_for(sched.tasks["spring"], 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


@pytest.mark.e2e
async def test_outcall_serve_subprocess(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "OUTCALL_DB": str(tmp_path / "serve.db"),
        "OUTCALL_CONFIG": str(tmp_path / "none.toml"),
        "OUTCALL_API_TOKEN": "e2e-admin-token",
        "OUTCALL_DIALPLANS_DIR": str(tmp_path / "dialplans"),
        "OUTCALL_MODELS_DIR": str(tmp_path / "no-models"),  # lazy: never loaded without a call
    }
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "outcall",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    try:
        assert proc.stderr is not None

        async def started() -> None:
            assert proc.stderr is not None
            while True:
                line = (await proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError("outcall serve exited:\n" + "".join(log))
                log.append(line)
                if "Uvicorn running on" in line:
                    return

        await asyncio.wait_for(started(), 20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            r = await client.get("/healthz")
            ready_s = time.monotonic() - t0
            assert r.status_code == 200 and r.json()["status"] == "ok"
            assert ready_s < 5.0, f"/healthz took {ready_s:.2f}s"
            assert (await client.get("/api/v1/campaigns")).status_code == 401
            h = {"Authorization": "Bearer e2e-admin-token"}
            r = await client.post(
                "/api/v1/campaigns", json={"name": "e2e", "dialplan": "trial-class-zh"}, headers=h
            )
            assert r.status_code == 201, r.text
            r = await client.get("/api/v1/campaigns", headers=h)
            assert r.status_code == 200 and [c["name"] for c in r.json()["items"]] == ["e2e"]
            r = await client.get("/metrics", headers=h)
            assert 'outcall_campaigns{status="draft"} 1' in r.text
        sys.stderr.write(json.dumps({"healthz_ready_s": round(ready_s, 3)}) + "\n")
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode in (0, -15)
