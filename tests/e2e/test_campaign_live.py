"""`outcall campaign run` end to end: the scheduler claims contacts from a real SQLite store, dials them
through our SIP gateway to a real SIP peer (our UA as the carrier: busy for one number, answering then
hanging up for another), the speech models hold the answered call, and the store gets the attempts,
retries, caller IDs from the trunk's pool, and a DNC number that is never dialed."""

from __future__ import annotations

import asyncio
import os
import time as _time
from datetime import time
from pathlib import Path

import numpy as np
import pytest

from engine.campaign.calendar import CallingHours
from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig, CampaignStatus
from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent
from gateway.store.sqlite import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS_DIR = Path(
    os.environ.get("OUTCALL_MODELS_DIR") or Path(__file__).resolve().parents[2] / "var" / "models"
)
CALLER_IDS = ["02162120001", "01062120001"]


async def test_campaign_run_dials_real_sip_and_records_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (MODELS_DIR / "manifest.json").is_file():
        pytest.skip("speech models not installed (make models)")
    seen: list[tuple[str, str | None]] = []
    heard_robot = asyncio.Event()

    async def carrier(leg: SipCallLeg) -> None:
        user = leg.info.target.split(":", 1)[1].split("@", 1)[0]
        seen.append((user, leg.info.caller_id))
        if user.endswith("1"):
            await leg.reject(486)
            return
        await leg.answer()
        async for frame in leg.frames():  # the callee listens until the robot speaks, then hangs up
            if int(np.abs(frame.astype(np.int32)).max()) > 1000:
                heard_robot.set()
                break
        await leg.hangup()

    peer = UserAgent(on_incoming=carrier)
    await peer.start()
    host, port = peer.local_addr
    cfg = tmp_path / "outcall.toml"
    cfg.write_text(
        f'[[trunks]]\nname = "carrier"\nproxy = "{host}:{port}"\ncaller_ids = {CALLER_IDS!r}\n'.replace(
            "'", '"'
        ),
        encoding="utf-8",
    )
    db = tmp_path / "o.db"
    monkeypatch.setenv("OUTCALL_CONFIG", str(cfg))
    monkeypatch.setenv("OUTCALL_DB", str(db))
    monkeypatch.setenv("OUTCALL_MODELS_DIR", str(MODELS_DIR))
    monkeypatch.setenv("OUTCALL_SIP_BIND", "127.0.0.1:0")
    store = SqliteStore(db)
    store.create_campaign_sync(
        CampaignConfig(
            name="spring",
            dialplan="trial-class-zh",
            trunk="carrier",
            hours=CallingHours.every_day(time(0, 0), time(23, 59, 59), holidays=True),
            ring_timeout=10,
        ),
        now=_time.time(),
    )
    phones = ["+8613800000001", "+8613800000002", "+8613800000003"]
    store.add_contacts_sync("spring", [Contact(campaign="spring", phone=p) for p in phones], now=_time.time())
    store.add_dnc_sync("+8613800000003", "", "asked before", now=_time.time())
    store.set_status_sync("spring", CampaignStatus.RUNNING)

    from outcall.campaign_cli import _run_live

    try:
        stats = await asyncio.wait_for(_run_live("spring", until_idle=True), 240)
    finally:
        await peer.close()
    assert heard_robot.is_set()
    dialed = sorted(u for u, _ in seen)
    assert dialed == ["13800000001", "13800000002"]  # once each; the DNC number never left the box
    assert {cid for _, cid in seen} <= set(CALLER_IDS) and len({cid for _, cid in seen}) == 2  # rotated
    attempts = {a["phone"]: a for a in store.attempts_sync("spring")}
    assert attempts["+8613800000001"]["disposition"] == "busy"
    assert attempts["+8613800000002"]["disposition"] == "answered"
    assert "+8613800000003" not in attempts
    outcomes = {o.to: o for o in await store.list_outcomes(campaign="spring")}
    assert outcomes["+8613800000002"].caller_id in CALLER_IDS
    assert outcomes["+8613800000002"].hangup_by == "callee"
    states = store.contact_states_sync("spring")
    assert states.get("pending") == 1  # busy: retried later (30 min), not now
    assert stats.dialed == 2 and stats.answered == 1 and stats.dispositions.get("busy") == 1
    assert set(store.load_caller_ids_sync("carrier")) == set(CALLER_IDS)  # health kept for a restart
