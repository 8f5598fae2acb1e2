"""Follow-up sinks through the real outbox + deliverer and a SQLite store, against the loopback Dysmsapi
and qyapi fakes: one SMS per requested outcome (also across a throttled retry and a redelivered row),
none for converted or DNC contacts, a daily cap per number, rules from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.delivery import OutboxDeliverer
from gateway.followup import (
    FollowUpLedger,
    FollowUpRule,
    FollowUpSink,
    SmsSender,
    WecomSender,
    WecomTemplate,
    requested_templates,
)
from gateway.sms_aliyun import AliyunSmsClient, AliyunSmsConfig, SmsTemplate
from gateway.store.outbox import RetryPolicy
from gateway.store.sqlite import SqliteStore
from gateway.wecom import WecomClient
from tests.gateway.fake_aliyun import FakeAliyun
from tests.gateway.fake_http import FakeHttp
from tests.gateway.fake_wecom import CORP_ID, SECRET, FakeWecom

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
LINK = "https://work.weixin.qq.com/ca/cawcde06a5b8b0d6a1"


def outcome(
    i: int, *, phone: str | None = None, grade: str = "A", follow_up: list[dict[str, str]] | None = None
) -> CallOutcome:
    variables: dict[str, Any] = {"name": "王女士", "slot": "周六上午"}
    if follow_up is not None:
        variables["follow_up"] = follow_up
    return CallOutcome(
        call_id=f"{i:032x}",
        campaign="spring",
        dialplan="trial-class-zh",
        to=phone or f"+86138{i:08d}",
        disposition=Disposition.ANSWERED,
        grade=grade,
        started_at=T0,
        ended_at=T0,
        variables=variables,
    )


SMS = [{"channel": "sms", "template": "trial_address"}]


@dataclass
class Rig:
    store: SqliteStore
    fake: FakeAliyun
    sink: FollowUpSink
    deliverer: OutboxDeliverer

    async def save_and_drain(self, o: CallOutcome) -> None:
        await self.store.save_outcome(o)
        await self.deliverer.drain()

    def states(self) -> list[str]:
        return [r.state for r in self.store.outbox_list_sync()]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = SqliteStore(tmp_path / "o.db")
    fake = FakeAliyun(keys={"LTAIkey": "secret"}, sign_names={"外呼助手"}, templates={"SMS_465", "SMS_466"})
    async with FakeHttp(fake.handle) as srv:
        cfg = AliyunSmsConfig(
            access_key_id="LTAIkey",
            access_key_secret=SecretStr("secret"),
            sign_name="外呼助手",
            endpoint=srv.url + "/",
        )
        templates = {
            "trial_address": SmsTemplate(
                template_code="SMS_465", params={"name": "name", "slot": "slot", "link": "$wecom_link"}
            ),
            "bad_code": SmsTemplate(template_code="SMS_000"),
            "needs_missing": SmsTemplate(template_code="SMS_466", params={"when": "callback_time"}),
        }
        sender = SmsSender(AliyunSmsClient(cfg), templates, wecom_link_url=LINK)
        rules = [FollowUpRule(campaigns=["spring"], grades=["A", "B"], tags=["rule"], sms="trial_address")]
        sink = FollowUpSink(sender, FollowUpLedger(store), rules=rules)
        store.outbox_sinks = [sink]
        deliverer = OutboxDeliverer(store, [sink], policy=RetryPolicy(base_s=0.0, jitter=0.0, max_attempts=5))
        yield Rig(store, fake, sink, deliverer)
        await deliverer.close()
    store.close()


async def test_requested_sms_sent_once_with_out_id_and_link(rig: Rig) -> None:
    o = outcome(1, follow_up=SMS)
    await rig.save_and_drain(o)
    assert len(rig.fake.sent) == 1
    s = rig.fake.sent[0]
    assert s.out_id == o.outcome_id and s.phone == "13800000001" and s.template_code == "SMS_465"
    assert s.params == {"name": "王女士", "slot": "周六上午", "link": f"{LINK}?customer_channel={o.call_id}"}
    assert rig.states() == ["delivered"]
    sent = FollowUpLedger(rig.store).sent_sync("sms")
    assert [(r["outcome_id"], r["state"]) for r in sent] == [(o.outcome_id, "sent")]


async def test_throttled_then_retried_still_one_sms(rig: Rig) -> None:
    rig.fake.script = ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User"]
    o = outcome(2, follow_up=SMS)
    await rig.save_and_drain(o)
    assert [x.out_id for x in rig.fake.sent] == [o.outcome_id]
    row = rig.store.outbox_list_sync()[0]
    assert (row.state, row.attempts) == ("delivered", 3)


async def test_redelivered_row_does_not_send_again(rig: Rig) -> None:
    o = outcome(3, follow_up=SMS)
    await rig.save_and_drain(o)
    # a deliverer that died after sending, before settling: the row comes due again
    with rig.store._tx() as cur:
        cur.execute("UPDATE outbox SET state='pending', next_at=0")
    await rig.deliverer.drain()
    assert len(rig.fake.sent) == 1
    assert rig.sink.skipped == {"already sent": 1}


async def test_converted_or_dnc_contacts_get_nothing(rig: Rig) -> None:
    rig.store.create_campaign_sync(CampaignConfig(name="spring", dialplan="trial-class-zh"))
    a, b = outcome(4, follow_up=SMS), outcome(5, follow_up=SMS)
    rig.store.add_contacts_sync("spring", [Contact(campaign="spring", phone=a.to)], now=0)
    assert rig.store.stop_contact_sync("spring", a.to, "converted") == 1
    rig.store.add_dnc_sync(b.to, "", "asked not to be called", now=0)
    await rig.save_and_drain(a)
    await rig.save_and_drain(b)
    assert rig.fake.sent == []
    assert rig.states() == ["delivered", "delivered"]
    assert rig.sink.skipped == {"converted": 1, "dnc": 1}


async def test_daily_cap_one_sms_per_number(rig: Rig) -> None:
    await rig.save_and_drain(outcome(6, phone="+8613900000006", follow_up=SMS))
    await rig.save_and_drain(outcome(7, phone="+8613900000006", follow_up=SMS))
    await rig.save_and_drain(outcome(8, phone="+8613900000008", follow_up=SMS))
    assert [s.phone for s in rig.fake.sent] == ["13900000006", "13900000008"]
    assert rig.sink.skipped == {"daily cap of 1 reached": 1}


async def test_permanent_rejection_frees_the_cap(rig: Rig) -> None:
    bad = outcome(9, phone="+8613900000009", follow_up=[{"channel": "sms", "template": "bad_code"}])
    await rig.save_and_drain(bad)
    assert rig.states() == ["dead"]
    assert "OUTCALL_SMS_TEMPLATES" in (rig.store.outbox_list_sync()[0].last_error or "")
    await rig.save_and_drain(outcome(10, phone="+8613900000009", follow_up=SMS))
    assert [s.phone for s in rig.fake.sent] == ["13900000009"]


async def test_unknown_template_or_missing_variable_is_a_clear_dead_letter(rig: Rig) -> None:
    await rig.save_and_drain(outcome(11, follow_up=[{"channel": "sms", "template": "nope"}]))
    await rig.save_and_drain(outcome(12, follow_up=[{"channel": "sms", "template": "needs_missing"}]))
    errors = [r.last_error or "" for r in rig.store.outbox_list_sync()]
    assert any("'nope'" in e and "OUTCALL_SMS_TEMPLATES" in e for e in errors)
    assert any("callback_time" in e for e in errors)
    assert rig.fake.sent == []


async def test_rules_add_follow_ups_and_others_are_not_enqueued(rig: Rig) -> None:
    ruled = outcome(13, grade="B")
    ruled.tags.append("rule")
    await rig.save_and_drain(ruled)
    await rig.save_and_drain(outcome(14, grade="C").model_copy(update={"tags": ["rule"]}))
    await rig.save_and_drain(outcome(15, grade="A"))  # no request, no matching rule
    assert [s.out_id for s in rig.fake.sent] == [ruled.outcome_id]
    assert len(rig.store.outbox_list_sync()) == 1


def test_requested_templates_dialplan_first_then_rules_without_repeats() -> None:
    o = outcome(
        16,
        follow_up=[{"channel": "wecom", "template": "advisor"}, {"channel": "sms", "template": "x"}],
    )
    rules = [FollowUpRule(grades=["A"], sms="y", wecom="advisor"), FollowUpRule(grades=["E"], sms="z")]
    assert requested_templates(o, "sms", rules) == ["x", "y"]
    assert requested_templates(o, "wecom", rules) == ["advisor"]


async def test_wecom_follow_up_posts_to_the_advisors_robot(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    fake = FakeWecom()
    async with FakeHttp(fake.handle) as srv:
        sender = WecomSender(
            WecomClient(CORP_ID, SECRET, base_url=srv.url),
            {
                "advisor": WecomTemplate(
                    robot="sales", text="**{$grade}** {$phone_masked} {slot} {$wecom_link}"
                )
            },
            {"sales": "robot-key-1"},
            link_url=LINK,
        )
        sink = FollowUpSink(sender, FollowUpLedger(store))
        store.outbox_sinks = [sink]
        deliverer = OutboxDeliverer(store, [sink], policy=RetryPolicy(base_s=0.0, jitter=0.0))
        o = outcome(17, follow_up=[{"channel": "wecom", "template": "advisor"}])
        await store.save_outcome(o)
        await deliverer.drain()
        await deliverer.close()
    store.close()
    assert [m["markdown"]["content"] for m in fake.robot_messages] == [
        f"**A** 138****0017 周六上午 {LINK}?customer_channel={o.call_id}"
    ]
