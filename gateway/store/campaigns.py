"""Campaign persistence shared by the SQLite and Postgres stores: campaigns, contacts, attempts, DNC,
and claims with leases keyed by phone number.

A claim is one row per phone number (primary key), so a number is never dialed twice at once, across
campaigns and nodes. Claims carry a lease; a node renews its leases while calls run. A claim whose lease
expired (the node died) is resolved per policy inside the next claim transaction: the attempt is marked
failed ("lease expired"), it does not consume the contact's attempts, and the contact is due again after
the campaign's `lease_expired_delay_s`. The frequency cap (answered calls per number across campaigns) is
checked inside the claim transaction.

Subclasses give a transaction (`_tx`) and the SQL dialect; every method here is blocking and the async
wrappers run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from engine.campaign.contacts import Contact
from engine.campaign.policy import Action, Decision, is_answered
from engine.campaign.scheduler import CampaignConfig, CampaignStatus, Claim
from engine.errors import ConfigError
from engine.outcome import CallOutcome

T = TypeVar("T")

CONTACT_COLS = (
    "id, campaign, phone, name, tz, consent, variables, priority, variant, attempts, first_attempt_at"
)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


def _row_contact(r: tuple[Any, ...]) -> Contact:
    return Contact(
        id=r[0],
        campaign=r[1],
        phone=r[2],
        name=r[3],
        timezone=r[4],
        consent=None if r[5] is None else bool(r[5]),
        variables=json.loads(r[6]) if r[6] else {},
        priority=r[7],
        variant=r[8],
        attempts=r[9],
        first_attempt_at=r[10],
    )


class CampaignStore:
    """Mixin: the campaign tables on top of `_tx()`. `skip_locked` is '' (SQLite) or 'FOR UPDATE SKIP
    LOCKED' (Postgres)."""

    node: str = "local"
    lease_s: float = 300.0
    skip_locked: str = ""
    #: run the blocking calls on the loop itself: only for virtual-clock tests (deterministic ordering)
    inline: bool = False

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql

    # ---- campaigns
    def create_campaign_sync(self, config: CampaignConfig, *, now: float | None = None) -> None:
        with self._tx() as cur:
            cur.execute(self._q("SELECT 1 FROM campaigns WHERE name=?"), (config.name,))
            if cur.fetchone():
                raise ConfigError(
                    f"campaign {config.name!r} already exists", hint="pick another name or delete it first"
                )
            cur.execute(
                self._q(
                    "INSERT INTO campaigns(name, dialplan, status, config, created_at) VALUES (?,?,?,?,?)"
                ),
                (
                    config.name,
                    config.dialplan,
                    CampaignStatus.DRAFT.value,
                    config.model_dump_json(),
                    now if now is not None else datetime.now(UTC).timestamp(),
                ),
            )

    def get_campaign_sync(self, name: str) -> tuple[CampaignConfig, CampaignStatus]:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT config, status FROM campaigns WHERE name=?"), (name,))
            row = cur.fetchone()
        if row is None:
            raise ConfigError(f"no campaign named {name!r}", hint="create it with `outcall campaign create`")
        return CampaignConfig.model_validate_json(row[0]), CampaignStatus(row[1])

    def update_campaign_sync(self, config: CampaignConfig) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE campaigns SET config=?, dialplan=? WHERE name=?"),
                (config.model_dump_json(), config.dialplan, config.name),
            )

    def list_campaigns_sync(self) -> list[tuple[str, str, str]]:
        with self._tx(write=False) as cur:
            cur.execute("SELECT name, dialplan, status FROM campaigns ORDER BY created_at")
            return [tuple(r) for r in cur.fetchall()]

    def delete_campaign_sync(self, name: str) -> None:
        with self._tx() as cur:
            for table in ("claims", "contacts", "attempts"):
                cur.execute(self._q(f"DELETE FROM {table} WHERE campaign=?"), (name,))
            cur.execute(self._q("DELETE FROM dnc WHERE campaign=?"), (name,))
            cur.execute(self._q("DELETE FROM campaigns WHERE name=?"), (name,))

    def set_status_sync(self, name: str, status: CampaignStatus) -> None:
        self.get_campaign_sync(name)
        with self._tx() as cur:
            cur.execute(self._q("UPDATE campaigns SET status=? WHERE name=?"), (status.value, name))
            if status is CampaignStatus.STOPPED:
                cur.execute(
                    self._q("UPDATE contacts SET state='stopped' WHERE campaign=? AND state='pending'"),
                    (name,),
                )

    # ---- contacts
    def add_contacts_sync(self, campaign: str, contacts: Iterable[Contact], *, now: float) -> tuple[int, int]:
        """Insert contacts (due at `now`); returns (inserted, duplicates already in the campaign)."""
        sql = self._q(
            "INSERT INTO contacts(campaign, phone, name, tz, consent, variables, priority, variant, state,"
            " attempts, next_at) VALUES (?,?,?,?,?,?,?,?,'pending',0,?)"
            " ON CONFLICT (campaign, phone) DO NOTHING"
        )
        rows = [
            (
                campaign,
                c.phone,
                c.name,
                c.timezone,
                None if c.consent is None else int(c.consent),
                json.dumps(c.variables, ensure_ascii=False) if c.variables else None,
                c.priority,
                c.variant,
                now,
            )
            for c in contacts
        ]
        if not rows:
            return 0, 0
        with self._tx() as cur:
            cur.execute(self._q("SELECT count(*) FROM contacts WHERE campaign=?"), (campaign,))
            before = int(cur.fetchone()[0])
            cur.executemany(sql, rows)
            cur.execute(self._q("SELECT count(*) FROM contacts WHERE campaign=?"), (campaign,))
            inserted = int(cur.fetchone()[0]) - before
        return inserted, len(rows) - inserted

    def contact_states_sync(self, campaign: str) -> dict[str, int]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT state, count(*) FROM contacts WHERE campaign=? GROUP BY state"), (campaign,)
            )
            return {r[0]: int(r[1]) for r in cur.fetchall()}

    def iter_contacts_sync(self, campaign: str, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
        last = 0
        while True:
            with self._tx(write=False) as cur:
                cur.execute(
                    self._q(
                        "SELECT id, phone, name, tz, consent, variables, priority, variant, state, attempts,"
                        " last_disposition, last_call_id, next_at FROM contacts WHERE campaign=? AND id>?"
                        " ORDER BY id LIMIT ?"
                    ),
                    (campaign, last, batch),
                )
                rows = cur.fetchall()
            if not rows:
                return
            for r in rows:
                row = contact_row(r)
                row["next_at"] = row["next_at"].isoformat() if row["next_at"] is not None else None
                yield row
            last = rows[-1][0]

    def next_due_sync(self, campaign: str) -> datetime | None:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT min(next_at) FROM contacts WHERE campaign=? AND state='pending'"), (campaign,)
            )
            row = cur.fetchone()
        return datetime.fromtimestamp(row[0], UTC) if row and row[0] is not None else None

    def stop_contact_sync(self, campaign: str, phone: str, reason: str = "converted") -> int:
        """A CRM 'converted' event: stop pending attempts and follow-ups of this number."""
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE contacts SET state=? WHERE campaign=? AND phone=? AND state='pending'"),
                (reason, campaign, phone),
            )
            return int(cur.rowcount)

    # ---- caller-ID health (one JSON document per number: engine.campaign.callerid.CallerIdPool.dump)
    def save_caller_id_sync(self, number: str, trunk: str, state: dict[str, Any], *, now: float) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO caller_ids (number, trunk, state, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(number) DO UPDATE SET trunk=excluded.trunk, state=excluded.state, "
                    "updated_at=excluded.updated_at"
                ),
                (number, trunk, json.dumps(state), now),
            )

    def load_caller_ids_sync(self, trunk: str) -> dict[str, dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT number, state FROM caller_ids WHERE trunk=?"), (trunk,))
            return {str(r[0]): json.loads(r[1]) for r in cur.fetchall()}

    # ---- DNC
    def add_dnc_sync(self, phone: str, campaign: str = "", reason: str = "", *, now: float) -> None:
        with self._tx() as cur:
            self._add_dnc(cur, phone, campaign, reason, now)

    def _add_dnc(self, cur: Cursor, phone: str, campaign: str, reason: str, now: float) -> None:
        cur.execute(
            self._q(
                "INSERT INTO dnc(phone, campaign, reason, added_at) VALUES (?,?,?,?) "
                "ON CONFLICT (phone, campaign) DO NOTHING"
            ),
            (phone, campaign, reason, now),
        )

    def remove_dnc_sync(self, phone: str, campaign: str = "") -> bool:
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM dnc WHERE phone=? AND campaign=?"), (phone, campaign))
            return bool(cur.rowcount)

    def list_dnc_sync(
        self, campaign: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            if campaign is None:
                cur.execute(
                    self._q(
                        "SELECT phone, campaign, reason, added_at FROM dnc ORDER BY added_at LIMIT ? OFFSET ?"
                    ),
                    (limit, offset),
                )
            else:
                cur.execute(
                    self._q(
                        "SELECT phone, campaign, reason, added_at FROM dnc WHERE campaign=? "
                        "ORDER BY added_at LIMIT ? OFFSET ?"
                    ),
                    (campaign, limit, offset),
                )
            return [
                {"phone": r[0], "campaign": r[1], "reason": r[2], "added_at": r[3]} for r in cur.fetchall()
            ]

    def is_dnc_sync(self, phone: str, campaign: str) -> bool:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT 1 FROM dnc WHERE phone=? AND campaign IN ('', ?)"), (phone, campaign))
            return cur.fetchone() is not None

    # ---- claims
    def _resolve_expired(self, cur: Cursor, now: float) -> int:
        cur.execute(
            self._q(
                "SELECT phone, contact_id, attempt_id, campaign FROM claims WHERE lease_until<? "
                + self.skip_locked
            ),
            (now,),
        )
        expired = cur.fetchall()
        for phone, contact_id, attempt_id, campaign in expired:
            delay = self._config(cur, campaign).retry.lease_expired_delay_s
            cur.execute(
                self._q(
                    "UPDATE attempts SET disposition='failed', reason='lease expired', ended_at=? WHERE id=?"
                ),
                (now, attempt_id),
            )
            cur.execute(
                self._q(
                    "UPDATE contacts SET state='pending', next_at=?, last_disposition='failed' "
                    "WHERE id=? AND state='claimed'"
                ),
                (now + delay, contact_id),
            )
            cur.execute(self._q("DELETE FROM claims WHERE phone=?"), (phone,))
        return len(expired)

    def _config(self, cur: Cursor, campaign: str) -> CampaignConfig:
        cache: dict[str, CampaignConfig] = self.__dict__.setdefault("_config_cache", {})
        if campaign not in cache:
            cur.execute(self._q("SELECT config FROM campaigns WHERE name=?"), (campaign,))
            row = cur.fetchone()
            cache[campaign] = (
                CampaignConfig.model_validate_json(row[0])
                if row
                else CampaignConfig(name=campaign, dialplan="?")
            )
        return cache[campaign]

    def _insert_claim(
        self, cur: Cursor, phone: str, contact_id: int, campaign: str, lease_until: float
    ) -> bool:
        cur.execute(
            self._q(
                "INSERT INTO claims(phone, contact_id, campaign, node, lease_until) VALUES (?,?,?,?,?) "
                "ON CONFLICT (phone) DO NOTHING"
            ),
            (phone, contact_id, campaign, self.node, lease_until),
        )
        return cur.rowcount == 1

    def claim_sync(self, campaign: str, n: int, now: float) -> list[Claim]:
        """Claim up to n due contacts of a running campaign; atomic across processes and nodes."""
        out: list[Claim] = []
        lease_until = now + self.lease_s
        with self._tx() as cur:
            self._resolve_expired(cur, now)
            cur.execute(self._q("SELECT status FROM campaigns WHERE name=?"), (campaign,))
            st = cur.fetchone()
            if st is None or st[0] != CampaignStatus.RUNNING.value:
                return []
            cap = self._config(cur, campaign).frequency_cap
            cur.execute(
                self._q(
                    f"SELECT {CONTACT_COLS} FROM contacts "
                    "WHERE campaign=? AND state='pending' AND next_at<=? "
                    f"ORDER BY priority DESC, next_at LIMIT ? {self.skip_locked}"
                ),
                (campaign, now, n * 2 + 8),
            )
            for r in cur.fetchall():
                if len(out) >= n:
                    break
                c = _row_contact(r)
                assert c.id is not None
                cur.execute(
                    self._q("SELECT 1 FROM dnc WHERE phone=? AND campaign IN ('', ?)"), (c.phone, campaign)
                )
                if cur.fetchone():
                    cur.execute(self._q("UPDATE contacts SET state='dnc' WHERE id=?"), (c.id,))
                    continue
                if not self._insert_claim(cur, c.phone, c.id, campaign, lease_until):
                    # the number is being dialed by another campaign/node right now
                    cur.execute(self._q("UPDATE contacts SET next_at=? WHERE id=?"), (now + 60, c.id))
                    continue
                cur.execute(
                    self._q("SELECT at FROM answered WHERE phone=? AND at>?"), (c.phone, now - cap.window_s)
                )
                nxt = cap.next_allowed([float(x[0]) for x in cur.fetchall()], now)
                if nxt is not None:
                    cur.execute(self._q("DELETE FROM claims WHERE phone=?"), (c.phone,))
                    cur.execute(self._q("UPDATE contacts SET next_at=? WHERE id=?"), (nxt, c.id))
                    continue
                cur.execute(
                    self._q(
                        "INSERT INTO attempts(contact_id, campaign, phone, attempt_no, node, claimed_at) "
                        "VALUES (?,?,?,?,?,?) RETURNING id"
                    ),
                    (c.id, campaign, c.phone, c.attempts + 1, self.node, now),
                )
                attempt_id = int(cur.fetchone()[0])
                cur.execute(self._q("UPDATE claims SET attempt_id=? WHERE phone=?"), (attempt_id, c.phone))
                cur.execute(self._q("UPDATE contacts SET state='claimed' WHERE id=?"), (c.id,))
                out.append(Claim(attempt_id, c, c.attempts + 1, lease_until))
        return out

    def renew_sync(self, now: float) -> int:
        """Extend the leases this node holds (call periodically while calls run)."""
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE claims SET lease_until=? WHERE node=?"), (now + self.lease_s, self.node)
            )
            return int(cur.rowcount)

    def complete_sync(self, claim: Claim, outcome: Any, decision: Decision) -> None:
        """One transaction: the attempt's result, the outcome row, the contact's next step, the DNC entry,
        the frequency-cap record, and the claim released."""
        c = claim.contact
        ended = outcome.ended_at.timestamp()
        disp = outcome.disposition
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE attempts SET disposition=?, call_id=?, ended_at=?, consumed=? WHERE id=?"),
                (
                    disp.value,
                    getattr(outcome, "call_id", None),
                    ended,
                    int(decision.consumes_attempt),
                    claim.attempt_id,
                ),
            )
            if is_answered(disp):
                cur.execute(self._q("INSERT INTO answered(phone, at) VALUES (?,?)"), (c.phone, ended))
            if decision.add_dnc:
                self._add_dnc(cur, c.phone, "", "callee asked (stop_calling)", ended)
            state = (
                "pending"
                if decision.action is Action.RETRY and decision.at is not None
                else decision.action.value
            )
            next_at = decision.at.timestamp() if decision.at is not None else None
            inc = 1 if decision.consumes_attempt else 0
            cur.execute(
                self._q(
                    "UPDATE contacts SET state=?, next_at=COALESCE(?, next_at), attempts=attempts+?, "
                    "first_attempt_at=COALESCE(first_attempt_at, ?), last_disposition=?, last_call_id=? "
                    "WHERE id=? AND state='claimed'"
                ),
                (
                    state,
                    next_at,
                    inc,
                    ended if inc else None,
                    disp.value,
                    getattr(outcome, "call_id", None),
                    c.id,
                ),
            )
            cur.execute(
                self._q("DELETE FROM claims WHERE phone=? AND attempt_id=?"), (c.phone, claim.attempt_id)
            )
            cost = float(getattr(outcome, "cost", 0.0) or 0.0)
            billed = int(getattr(outcome, "billed_s", 0) or 0)
            if cost or billed:
                cur.execute(
                    self._q(
                        "INSERT INTO campaign_spend (campaign, cost, billed_s) VALUES (?,?,?) "
                        "ON CONFLICT(campaign) DO UPDATE SET cost=campaign_spend.cost+excluded.cost, "
                        "billed_s=campaign_spend.billed_s+excluded.billed_s"
                    ),
                    (claim.contact.campaign, cost, billed),
                )
            if isinstance(outcome, CallOutcome):
                self._save_outcome(cur, outcome)

    def spent_sync(self, campaign: str) -> float:
        """What the campaign's calls have cost so far (sum of outcome costs, kept with each completion)."""
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT cost FROM campaign_spend WHERE campaign=?"), (campaign,))
            r = cur.fetchone()
            return float(r[0]) if r else 0.0

    def release_sync(self, claim: Claim, at: datetime | None, reason: str) -> None:
        c = claim.contact
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM attempts WHERE id=?"), (claim.attempt_id,))
            if at is None:
                cur.execute(self._q("UPDATE contacts SET state=? WHERE id=?"), (reason, c.id))
            else:
                cur.execute(
                    self._q("UPDATE contacts SET state='pending', next_at=? WHERE id=?"),
                    (at.timestamp(), c.id),
                )
            cur.execute(
                self._q("DELETE FROM claims WHERE phone=? AND attempt_id=?"), (c.phone, claim.attempt_id)
            )

    def active_claims_sync(self) -> list[tuple[str, str, str, float]]:
        with self._tx(write=False) as cur:
            cur.execute("SELECT phone, campaign, node, lease_until FROM claims ORDER BY phone")
            return [tuple(r) for r in cur.fetchall()]

    def attempts_sync(self, campaign: str) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT id, phone, attempt_no, node, disposition, reason, consumed FROM attempts "
                    "WHERE campaign=? ORDER BY id"
                ),
                (campaign,),
            )
            keys = ("id", "phone", "attempt_no", "node", "disposition", "reason", "consumed")
            return [dict(zip(keys, r, strict=True)) for r in cur.fetchall()]

    def campaign_stats_sync(self, campaign: str) -> dict[str, Any]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT disposition, count(*) FROM attempts WHERE campaign=? AND disposition IS NOT NULL "
                    "GROUP BY disposition"
                ),
                (campaign,),
            )
            disp = {r[0]: int(r[1]) for r in cur.fetchall()}
            cur.execute(
                self._q(
                    "SELECT COALESCE(c.variant, ''), count(*), "
                    "sum(CASE WHEN a.disposition='answered' THEN 1 ELSE 0 END) FROM attempts a "
                    "JOIN contacts c ON c.id=a.contact_id WHERE a.campaign=? AND a.disposition IS NOT NULL "
                    "AND a.disposition<>'failed' GROUP BY COALESCE(c.variant, '')"
                ),
                (campaign,),
            )
            variants = {r[0]: {"attempts": int(r[1]), "answered": int(r[2] or 0)} for r in cur.fetchall()}
        _cfg, status = self.get_campaign_sync(campaign)
        attempts = sum(v for k, v in disp.items() if k != "failed")
        return {
            "campaign": campaign,
            "status": status.value,
            "contacts": self.contact_states_sync(campaign),
            "dispositions": disp,
            "attempts": attempts,
            "connect_rate": round(disp.get("answered", 0) / attempts, 4) if attempts else None,
            "variants": variants,
        }

    def _save_outcome(self, cur: Cursor, o: CallOutcome) -> None:
        raise NotImplementedError

    # ---- async wrappers (the scheduler's ContactQueue port)
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.inline:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def claim(self, campaign: str, n: int, now: datetime) -> list[Claim]:
        return await self._call(self.claim_sync, campaign, n, now.timestamp())

    async def complete(self, claim: Claim, outcome: Any, decision: Decision) -> None:
        await self._call(self.complete_sync, claim, outcome, decision)

    async def release(self, claim: Claim, at: datetime | None, reason: str) -> None:
        await self._call(self.release_sync, claim, at, reason)

    async def next_due(self, campaign: str) -> datetime | None:
        return await self._call(self.next_due_sync, campaign)

    async def renew(self, now: datetime) -> int:
        return await self._call(self.renew_sync, now.timestamp())

    async def campaign_status(self, name: str) -> CampaignStatus:
        return (await self._call(self.get_campaign_sync, name))[1]


def contact_row(r: Any) -> dict[str, Any]:
    """A contacts row (id, phone, name, tz, consent, variables, priority, variant, state, attempts,
    last_disposition, last_call_id, next_at) as the dict the CLI export and the API share."""
    return {
        "id": int(r[0]),
        "phone": r[1],
        "name": r[2],
        "timezone": r[3],
        "consent": None if r[4] is None else bool(r[4]),
        "variables": json.loads(r[5]) if r[5] else {},
        "priority": r[6],
        "variant": r[7],
        "state": r[8],
        "attempts": r[9],
        "last_disposition": r[10],
        "last_call_id": r[11],
        "next_at": datetime.fromtimestamp(r[12], UTC) if r[12] is not None else None,
    }
