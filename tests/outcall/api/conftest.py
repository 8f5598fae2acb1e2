"""API fixtures: a real SQLite file, a token per role, seeded outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.dispositions import Disposition
from engine.outcome import CallOutcome, Turn
from gateway.store.auth import AuthStore
from gateway.store.sqlite import SqliteStore
from outcall.api.app import create_app
from outcall.settings import load_settings

ENV_TOKEN = "env-admin-token-123"


@dataclass
class Api:
    client: TestClient
    store: SqliteStore
    db: Path
    tokens: dict[str, str]
    dialplans_dir: Path

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OUTCALL_API_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("OUTCALL_DIALPLANS_DIR", str(tmp_path / "dialplans"))
    db = tmp_path / "api.db"
    store = SqliteStore(db)
    auth = AuthStore(store)
    tokens = {
        role: auth.create_token(role, f"{role}-bot")[1] for role in ("admin", "manager", "designer", "viewer")
    }
    tokens["env"] = ENV_TOKEN
    app = create_app(load_settings(db=str(db)), store)
    with TestClient(app) as client:
        yield Api(client, store, db, tokens, tmp_path / "dialplans")
    store.close()


T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def outcome(
    i: int,
    disposition: Disposition = Disposition.ANSWERED,
    *,
    campaign: str = "spring",
    grade: str = "B",
    dialplan: str = "trial-class-zh",
    hour: int = 0,
    recording: str | None = None,
) -> CallOutcome:
    start = T0 + timedelta(hours=hour, minutes=i)
    answered = disposition is Disposition.ANSWERED
    return CallOutcome(
        call_id=f"call-{i}",
        campaign=campaign,
        to=f"+86138000000{i:02d}",
        caller_id="02161234567",
        dialplan=dialplan,
        disposition=disposition,
        grade=grade if answered else "E",
        started_at=start,
        answered_at=start + timedelta(seconds=5) if answered else None,
        ended_at=start + timedelta(seconds=65 if answered else 30),
        turns=[
            Turn(speaker="bot", text="您好，我是课程顾问", start_s=0.0),
            Turn(speaker="callee", text="好的，我的电话是13912345678", intent="affirm", start_s=3.0),
        ]
        if answered
        else [],
        variables={"phone": f"+86138000000{i:02d}"},
        recording=recording,
    )


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`outcall.cli.main` points the root logger at the (captured) stderr; undo it after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
