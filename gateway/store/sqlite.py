"""SQLite store (WAL). Every blocking call runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.outcome import CallOutcome
from gateway.store.campaigns import CampaignStore, Cursor
from gateway.store.outbox import SQLITE_SCHEMA as OUTBOX_SCHEMA
from gateway.store.outbox import OutboxStore, SinkSpec, load_outcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    outcome_id   TEXT PRIMARY KEY,
    call_id      TEXT NOT NULL UNIQUE,
    campaign     TEXT,
    phone        TEXT NOT NULL,
    disposition  TEXT NOT NULL,
    grade        TEXT NOT NULL,
    sip_code     INTEGER,
    started_at   TEXT NOT NULL,
    answered_at  TEXT,
    ended_at     TEXT NOT NULL,
    talk_s       REAL NOT NULL,
    dialplan     TEXT,
    body         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_campaign ON outcomes(campaign, started_at);
CREATE INDEX IF NOT EXISTS outcomes_phone ON outcomes(phone, started_at);
CREATE TABLE IF NOT EXISTS campaigns (
    name        TEXT PRIMARY KEY,
    dialplan    TEXT NOT NULL,
    status      TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign         TEXT NOT NULL,
    phone            TEXT NOT NULL,
    name             TEXT,
    tz               TEXT,
    consent          INTEGER,
    variables        TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    variant          TEXT,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    next_at          REAL,
    last_disposition TEXT,
    last_call_id     TEXT,
    UNIQUE (campaign, phone)
);
CREATE INDEX IF NOT EXISTS contacts_due ON contacts(campaign, state, priority DESC, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER NOT NULL,
    campaign    TEXT NOT NULL,
    phone       TEXT NOT NULL,
    attempt_no  INTEGER NOT NULL,
    node        TEXT NOT NULL,
    claimed_at  REAL NOT NULL,
    ended_at    REAL,
    disposition TEXT,
    reason      TEXT,
    call_id     TEXT,
    consumed    INTEGER
);
CREATE INDEX IF NOT EXISTS attempts_campaign ON attempts(campaign, id);
CREATE TABLE IF NOT EXISTS claims (
    phone       TEXT PRIMARY KEY,
    contact_id  INTEGER NOT NULL,
    campaign    TEXT NOT NULL,
    attempt_id  INTEGER,
    node        TEXT NOT NULL,
    lease_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_lease ON claims(lease_until);
CREATE TABLE IF NOT EXISTS dnc (
    phone     TEXT NOT NULL,
    campaign  TEXT NOT NULL DEFAULT '',
    reason    TEXT,
    added_at  REAL NOT NULL,
    PRIMARY KEY (phone, campaign)
);
CREATE TABLE IF NOT EXISTS answered (
    phone TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answered_phone ON answered(phone, at);
CREATE TABLE IF NOT EXISTS campaign_spend (
    campaign TEXT PRIMARY KEY, cost REAL NOT NULL DEFAULT 0, billed_s BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS caller_ids (
    number     TEXT PRIMARY KEY,
    trunk      TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

OUTCOME_INSERT = (
    "INSERT INTO outcomes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(outcome_id) DO UPDATE SET body=excluded.body"
)


def outcome_row(o: CallOutcome) -> tuple[Any, ...]:
    return (
        o.outcome_id,
        o.call_id,
        o.campaign,
        o.to,
        o.disposition.value,
        o.grade,
        o.sip_code,
        o.started_at.isoformat(),
        o.answered_at.isoformat() if o.answered_at else None,
        o.ended_at.isoformat(),
        o.talk_s,
        o.dialplan,
        o.model_dump_json(),
    )


class SqliteStore(CampaignStore, OutboxStore):
    """Outcomes, their delivery outbox and the campaign tables. Several processes may share one file:
    claims run in `BEGIN IMMEDIATE` transactions (one writer at a time), so no number is claimed twice."""

    def __init__(self, path: str | Path, *, node: str = "local", lease_s: float = 300.0) -> None:
        self.path = str(path)
        self.node = node
        self.lease_s = lease_s
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA + OUTBOX_SCHEMA)
        except sqlite3.Error as e:
            raise ConfigError(
                f"cannot open database {self.path!r}: {e}",
                hint="set OUTCALL_DB to a writable file path (default ./outcall.db)",
            ) from e

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Cursor]:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _save_outcome(self, cur: Cursor, o: CallOutcome, sinks: Sequence[SinkSpec] | None = None) -> None:
        """The outcome row and its outbox rows (``sinks``, default ``outbox_sinks``), in the caller's
        transaction."""
        cur.execute(OUTCOME_INSERT, outcome_row(o))
        self._enqueue(cur, o, sinks)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._db.execute(sql, params)
            return cur.fetchall()

    def save_outcome_sync(self, o: CallOutcome, sinks: Sequence[SinkSpec] | None = None) -> None:
        """Store an outcome and enqueue its deliveries atomically (one transaction)."""
        with self._tx() as cur:
            self._save_outcome(cur, o, sinks)

    async def save_outcome(self, o: CallOutcome, sinks: Sequence[SinkSpec] | None = None) -> None:
        await asyncio.to_thread(self.save_outcome_sync, o, sinks)

    def _load(self, rows: list[tuple[Any, ...]]) -> list[CallOutcome]:
        return [load_outcome(body) for (body,) in rows]

    async def get_outcome(self, call_id: str) -> CallOutcome | None:
        rows = await asyncio.to_thread(self._run, "SELECT body FROM outcomes WHERE call_id=?", (call_id,))
        found = self._load(rows)
        return found[0] if found else None

    async def list_outcomes(self, *, campaign: str | None = None, limit: int = 100) -> list[CallOutcome]:
        if campaign is None:
            sql, params = "SELECT body FROM outcomes ORDER BY started_at DESC LIMIT ?", (limit,)
        else:
            sql = "SELECT body FROM outcomes WHERE campaign=? ORDER BY started_at DESC LIMIT ?"
            params = (campaign, limit)  # type: ignore[assignment]
        return self._load(await asyncio.to_thread(self._run, sql, params))

    def close(self) -> None:
        with self._lock:
            self._db.close()
