"""The follow-up ledger and the WeCom contact links on both backends: converted / DNC checks, the daily
cap, idempotent reservations, release on a permanent rejection, add-contact linked to its outcome."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.followup import FollowUpLedger
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.wecom_contacts import WecomContacts
from gateway.wecom_crypto import parse_event

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore | PostgresStore]:
    s = (
        SqliteStore(tmp_path / "o.db")
        if request.param == "sqlite"
        else PostgresStore(request.getfixturevalue("pg_db"))
    )
    yield s
    s.close()


def outcome(i: int, phone: str) -> CallOutcome:
    return CallOutcome(
        call_id=f"call-{i}",
        campaign="spring",
        to=phone,
        disposition=Disposition.ANSWERED,
        started_at=T0,
        ended_at=T0,
    )


def test_blocked_by_dnc_or_conversion(store: SqliteStore | PostgresStore) -> None:
    ledger = FollowUpLedger(store)
    store.create_campaign_sync(CampaignConfig(name="spring", dialplan="p"))
    store.add_contacts_sync("spring", [Contact(campaign="spring", phone="+8613800000001")], now=0)
    assert ledger.blocked_sync("13800000001", "spring") is None  # dialed without +86: same number
    store.stop_contact_sync("spring", "+8613800000001", "converted")
    assert ledger.blocked_sync("13800000001", "spring") == "converted"
    store.add_dnc_sync("+8613800000002", "spring", "asked", now=0)
    assert ledger.blocked_sync("+8613800000002", "spring") == "dnc"
    assert ledger.blocked_sync("+8613800000002", "autumn") is None  # a campaign's own list
    store.add_dnc_sync("+8613800000003", "", "global", now=0)
    assert ledger.blocked_sync("+8613800000003", "autumn") == "dnc"


def test_daily_cap_and_idempotent_reservation(store: SqliteStore | PostgresStore) -> None:
    ledger = FollowUpLedger(store)
    FollowUpLedger(store)  # a second node starting: the schema is already there
    a, b, c = outcome(1, "+8613900000001"), outcome(2, "+8613900000001"), outcome(3, "+8613900000001")
    assert ledger.reserve_sync(a, "sms", "t", day="2026-03-02", cap=2, now=1) == "send"
    assert ledger.reserve_sync(a, "sms", "t", day="2026-03-02", cap=2, now=1) == "send"  # its own retry
    assert ledger.reserve_sync(b, "sms", "t", day="2026-03-02", cap=2, now=1) == "send"
    assert ledger.reserve_sync(c, "sms", "t", day="2026-03-02", cap=2, now=1) == "capped"
    assert ledger.reserve_sync(c, "wecom", "t", day="2026-03-02", cap=2, now=1) == "send"  # per channel
    assert ledger.reserve_sync(c, "sms", "t", day="2026-03-03", cap=2, now=1) == "send"  # next day
    ledger.mark_sent_sync(a.outcome_id, "sms", "biz-1", 2)
    assert ledger.reserve_sync(a, "sms", "t", day="2026-03-02", cap=2, now=3) == "sent"
    ledger.release_sync(b.outcome_id, "sms")
    ledger.release_sync(a.outcome_id, "sms")  # sent rows stay
    states = {(r["outcome_id"], r["channel"]): r["state"] for r in ledger.sent_sync()}
    assert states[(a.outcome_id, "sms")] == "sent" and (b.outcome_id, "sms") not in states


def test_add_contact_linked_to_its_outcome_once(store: SqliteStore | PostgresStore) -> None:
    contacts = WecomContacts(store)
    o = outcome(7, "+8613800000007")
    store.save_outcome_sync(o, sinks=[])
    xml = (
        "<xml><MsgType>event</MsgType><Event>change_external_contact</Event>"
        "<ChangeType>add_external_contact</ChangeType><UserID>li</UserID>"
        "<ExternalUserID>wmX</ExternalUserID><State>call-7</State></xml>"
    )
    linked = contacts.link_sync(parse_event(xml.encode()), now=1)
    assert linked is not None and linked.outcome_id == o.outcome_id and linked.campaign == "spring"
    assert contacts.link_sync(parse_event(xml.encode()), now=2) is None
    assert [r["outcome_id"] for r in contacts.list_sync()] == [o.outcome_id]
