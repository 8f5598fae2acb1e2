"""WeCom add-contact events linked back to the call that produced them.

An acquisition link carries ``customer_channel=<call id>``; WeCom returns it as ``State`` in the
``change_external_contact`` / ``add_external_contact`` callback. `WecomContacts.link_sync` stores the
contact (``wecom_contacts`` table) with the outcome of that call, so the CRM and reports see which call
turned into a WeCom contact. Blocking; run in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.followup import LedgerStore
from gateway.wecom_crypto import WecomEvent

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS wecom_contacts ("
    " external_userid TEXT NOT NULL, user_id TEXT NOT NULL, call_id TEXT, outcome_id TEXT,"
    " campaign TEXT, phone TEXT, state TEXT, added_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (external_userid, user_id))",
)


@dataclass(frozen=True)
class LinkedContact:
    external_userid: str
    user_id: str
    call_id: str | None
    outcome_id: str | None
    campaign: str | None
    phone: str | None
    dialplan: str | None
    variables: dict[str, Any]


class WecomContacts:
    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        with store._tx() as cur:
            if getattr(store, "skip_locked", ""):  # Postgres: nodes racing to create tables
                cur.execute("SELECT pg_advisory_xact_lock(770001)")
            for sql in SCHEMA:
                cur.execute(sql)

    def link_sync(self, ev: WecomEvent, *, now: float) -> LinkedContact | None:
        """Record an add-contact event; returns it with its outcome (None fields when the state is no
        call of ours); None for other events and for a contact already linked (WeCom re-sends callbacks
        it got no answer to)."""
        if not ev.is_add_contact or not ev.external_user_id or not ev.user_id:
            return None
        q = self.store._q
        row = None
        with self.store._tx() as cur:
            if ev.state:
                cur.execute(
                    q("SELECT outcome_id, campaign, phone, body FROM outcomes WHERE call_id=?"), (ev.state,)
                )
                row = cur.fetchone()
            cur.execute(
                q(
                    "INSERT INTO wecom_contacts(external_userid, user_id, call_id, outcome_id, campaign,"
                    " phone, state, added_at) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (external_userid, user_id) DO NOTHING"
                ),
                (
                    ev.external_user_id,
                    ev.user_id,
                    ev.state if row else None,
                    row[0] if row else None,
                    row[1] if row else None,
                    row[2] if row else None,
                    ev.state,
                    now,
                ),
            )
            if cur.rowcount == 0:  # a re-sent callback: already linked (and welcomed)
                return None
        body: dict[str, Any] = {}
        if row is not None:
            import json

            body = json.loads(row[3])
        return LinkedContact(
            external_userid=ev.external_user_id,
            user_id=ev.user_id,
            call_id=ev.state if row else None,
            outcome_id=row[0] if row else None,
            campaign=row[1] if row else None,
            phone=row[2] if row else None,
            dialplan=body.get("dialplan"),
            variables=body.get("variables") or {},
        )

    def list_sync(self) -> list[dict[str, Any]]:
        with self.store._tx(write=False) as cur:
            cur.execute(
                "SELECT external_userid, user_id, call_id, outcome_id, campaign, state FROM wecom_contacts "
                "ORDER BY added_at"
            )
            rows = cur.fetchall()
        keys = ("external_userid", "user_id", "call_id", "outcome_id", "campaign", "state")
        return [dict(zip(keys, r, strict=True)) for r in rows]
