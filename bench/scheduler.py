"""Scheduler benchmark: decisions/s for a 1 M-contact campaign with a fake line provider on a virtual
clock, and the time to pick the next due contacts at 1 M rows (in memory and in SQLite).

    .venv/bin/python bench/scheduler.py --json

A decision = one contact claimed, dialed (fake: rings 5 s, 30 % answer and talk 30 s), and its outcome
run through the retry policy and written back. Target ≥ 2000 decisions/s. Prints one JSON object and
writes bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.campaign.calendar import HolidayCalendar
from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig, CampaignLoop, CampaignStatus, Claim, MemoryQueue, Seat
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from gateway.store.sqlite import SqliteStore

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


@dataclass
class Out:
    disposition: Disposition
    ended_at: datetime
    tags: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def bench_contact(phone: str) -> Contact:
    """A minimal contact built without validation (1 M of them must be cheap to make)."""
    return Contact.model_construct(
        campaign="b",
        phone=phone,
        priority=0,
        id=None,
        attempts=0,
        first_attempt_at=None,
        variant=None,
        timezone=None,
        consent=None,
        variables={},
        name=None,
    )


async def loop_bench(n: int, virtual_s: float) -> dict[str, Any]:
    clock = VirtualClock(START)
    q = MemoryQueue()
    t0 = time.perf_counter()
    for i in range(n):
        q.add(bench_contact(f"+86138{i:08d}"))
    fill_s = time.perf_counter() - t0
    rng = random.Random(1)

    async def dial(claim: Claim, seat: Seat) -> Out:
        await clock.sleep(5)
        if rng.random() < 0.3 and seat.answered():
            await clock.sleep(30)
            return Out(Disposition.ANSWERED, clock.now())
        return Out(Disposition.NO_ANSWER, clock.now())

    cfg = CampaignConfig(
        name="b", dialplan="x", ai_capacity=1000, max_concurrency=5000, calls_per_second=1000
    )
    loop = CampaignLoop(cfg, q, dial, clock=clock, holidays=HolidayCalendar(), tick_s=0.5)
    task = asyncio.create_task(loop.run())
    t0 = time.perf_counter()
    await clock.advance(virtual_s, step=0.5)
    wall = time.perf_counter() - t0
    done = len(q.attempt_log)
    loop.stop()
    await clock.advance(120, step=1)
    await task
    return {
        "contacts": n,
        "fill_s": round(fill_s, 2),
        "virtual_s": virtual_s,
        "decisions": done,
        "wall_s": round(wall, 2),
        "decisions_per_s": round(done / wall),
        "max_answered_concurrent": loop.stats.max_answered_concurrent,
        "ai_capacity": cfg.ai_capacity,
    }


def sqlite_pick(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        s = SqliteStore(Path(d) / "b.db")
        s.create_campaign_sync(CampaignConfig(name="b", dialplan="x"))
        s.set_status_sync("b", CampaignStatus.RUNNING)
        t0 = time.perf_counter()
        batch = 50_000
        for k in range(0, n, batch):
            s.add_contacts_sync(
                "b",
                [Contact(campaign="b", phone=f"+86138{i:08d}") for i in range(k, min(n, k + batch))],
                now=START.timestamp(),
            )
        fill = time.perf_counter() - t0
        picks = []
        for j in range(50):
            t0 = time.perf_counter()
            got = s.claim_sync("b", 10, START.timestamp() + j)
            picks.append(time.perf_counter() - t0)
            assert len(got) == 10
        s.close()
    picks.sort()
    return {
        "rows": n,
        "fill_s": round(fill, 1),
        "claim10_ms_p50": round(picks[25] * 1000, 2),
        "claim10_ms_max": round(picks[-1] * 1000, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--virtual-s", type=float, default=300.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    mem = asyncio.run(loop_bench(args.contacts, args.virtual_s))
    t0 = time.perf_counter()
    q = MemoryQueue()
    for i in range(args.contacts):
        q.add(bench_contact(f"+86139{i:08d}"))
    t0 = time.perf_counter()
    asyncio.run(q.claim("b", 1, START))
    pick_mem_ms = (time.perf_counter() - t0) * 1000
    result = {
        "loop": mem,
        "pick_next_memory_ms": round(pick_mem_ms, 3),
        "pick_next_sqlite": sqlite_pick(args.contacts),
        "target_decisions_per_s": 2000,
        "ok": mem["decisions_per_s"] >= 2000,
    }
    out = Path(__file__).parent / "results" / "scheduler.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
