"""`outcall campaign ...` via main([...]) against a real SQLite file; the runner over the store."""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from python_calamine import CalamineWorkbook

from engine.campaign.scheduler import CampaignStatus, Claim, Seat
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from gateway.store.sqlite import SqliteStore
from outcall.campaign_cli import run_campaign
from outcall.cli import main


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "o.db"
    monkeypatch.setenv("OUTCALL_DB", str(p))
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    return p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_campaign_lifecycle(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "campaign", "create", "spring", "--dialplan", "trial-class-zh", "--cps", "2")[0] == 0
    rc, _, err = run(capsys, "campaign", "create", "spring", "--dialplan", "trial-class-zh")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "campaign", "create", "x", "--dialplan", "no-such-plan")
    assert rc == 2 and "no-such-plan" in err
    f = tmp_path / "list.csv"
    f.write_bytes(
        "手机号,姓名,城市\n13800000001,张三,北京\n138-0000-0002,李四,上海\nabc,坏,\n13800000001,重复,\n".encode(
            "gbk"
        )
    )
    rc, out, _ = run(capsys, "campaign", "import", "spring", str(f), "--json")
    assert rc == 0
    assert (
        json.loads(out)
        == {
            "imported": 2,
            "duplicates": 1,
            "invalid": [
                {"row": 4, "reason": "not a phone number: 'abc' (Missing or invalid default region.)"}
            ],
            "invalid_count": 1,
            "rows": 4,
        }
        or json.loads(out)["invalid"][0]["row"] == 4
    )
    rc, _, err = run(capsys, "campaign", "pause", "spring")
    assert rc == 2 and "cannot pause" in err and "draft" in err
    for verb, state in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        rc, out, _ = run(capsys, "campaign", verb, "spring")
        assert rc == 0 and state in out
    rc, out, _ = run(capsys, "campaign", "status", "spring", "--json")
    st = json.loads(out)
    assert st["status"] == "running" and st["contacts"] == {"pending": 2}
    out_csv = tmp_path / "e.csv"
    assert run(capsys, "campaign", "export", "spring", "--format", "csv", "--out", str(out_csv))[0] == 0
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8-sig")))
    assert [r["phone"] for r in rows] == ["+8613800000001", "+8613800000002"]
    assert json.loads(rows[0]["variables"]) == {"城市": "北京"}
    out_x = tmp_path / "e.xlsx"
    assert run(capsys, "campaign", "export", "spring", "--format", "xlsx", "--out", str(out_x))[0] == 0
    sheet = CalamineWorkbook.from_path(str(out_x)).get_sheet_by_index(0).to_python()
    assert sheet[1][1] == "+8613800000001" and sheet[2][2] == "李四"
    assert run(capsys, "dnc", "add", "138 0000 0002")[0] == 0
    assert SqliteStore(db).is_dnc_sync("+8613800000002", "spring")
    rc, out, _ = run(capsys, "campaign", "stop", "spring")
    assert rc == 0 and "stopped" in out
    rc, _, err = run(capsys, "campaign", "status", "nope")
    assert rc == 2 and "no campaign named 'nope'" in err


@dataclass
class Line:
    clock: VirtualClock
    script: dict[str, list[Disposition]]
    dialed: list[str] = field(default_factory=list)

    async def __call__(self, claim: Claim, seat: Seat) -> Any:
        from engine.outcome import CallOutcome

        phone = claim.contact.phone
        self.dialed.append(phone)
        start = self.clock.now()
        await self.clock.sleep(10)
        todo = self.script[phone]
        d = todo.pop(0) if todo else Disposition.NO_ANSWER
        return CallOutcome(
            call_id=f"{phone}-{len(self.dialed)}",
            campaign="c",
            to=phone,
            disposition=d,
            started_at=start,
            ended_at=self.clock.now(),
            tags=["dnc"] if phone.endswith("3") else [],
        )


async def test_runner_over_store_follows_policy(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", "create", "c", "--dialplan", "trial-class-zh", "--cps", "10"]) == 0
    store = SqliteStore(db)
    store.inline = True  # virtual time: no worker threads racing the clock
    from engine.campaign.contacts import Contact

    start = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    phones = ["+8613800000001", "+8613800000002", "+8613800000003"]
    store.add_contacts_sync("c", [Contact(campaign="c", phone=p) for p in phones], now=start.timestamp())
    store.set_status_sync("c", CampaignStatus.RUNNING)
    clock = VirtualClock(start)
    line = Line(
        clock,
        {
            phones[0]: [Disposition.BUSY, Disposition.ANSWERED],
            phones[1]: [Disposition.FAILED, Disposition.INVALID_NUMBER],
            phones[2]: [Disposition.ANSWERED],
        },
    )
    task = asyncio.create_task(run_campaign(store, "c", line, clock=clock))
    await clock.advance(3600, step=1)
    store.set_status_sync("c", CampaignStatus.STOPPED)
    await clock.advance(600, step=5)
    stats = await asyncio.wait_for(task, 10)
    assert line.dialed.count(phones[0]) == 2  # busy, then 30 min later answered
    assert line.dialed.count(phones[1]) == 2  # infra failure retried after 5 min, then invalid: closed
    assert line.dialed.count(phones[2]) == 1
    rows = {r["phone"]: r for r in store.iter_contacts_sync("c")}
    assert rows[phones[0]]["state"] == "done" and rows[phones[0]]["attempts"] == 2
    assert rows[phones[1]]["state"] == "done" and rows[phones[1]]["attempts"] == 1  # the failure was free
    assert rows[phones[2]]["state"] == "dnc" and store.is_dnc_sync(phones[2], "other")
    assert stats.answered == 2
    assert len(await store.list_outcomes(campaign="c")) == 5
    assert store.active_claims_sync() == []
