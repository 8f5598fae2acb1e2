"""Follow-up from settings to the wire: OUTCALL_SMS_* / OUTCALL_WECOM_* build the sinks in open_delivery,
a saved outcome sends its SMS with the acquisition link, the callee "opens" it, WeCom posts the signed,
encrypted add-contact event to /wecom/callback and it is linked to the call (and the advisor's welcome is
queued with add_msg_template)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine.dispositions import Disposition
from engine.errors import ConfigError
from engine.outcome import CallOutcome
from gateway.store.sqlite import SqliteStore
from gateway.wecom_contacts import WecomContacts
from gateway.wecom_crypto import aes_key, encrypt, signature
from outcall.api.app import create_app
from outcall.delivery import open_delivery
from outcall.settings import load_settings
from tests.gateway.fake_aliyun import FakeAliyun
from tests.gateway.fake_http import FakeHttp
from tests.gateway.fake_wecom import CORP_ID, SECRET, FakeWecom

AES = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CB_TOKEN = "cbToken123"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeAliyun, FakeHttp, FakeWecom, FakeHttp]]:
    ali = FakeAliyun(keys={"LTAIkey": "sekret"}, sign_names={"外呼助手"}, templates={"SMS_465"})
    wc = FakeWecom()
    async with FakeHttp(ali.handle) as a, FakeHttp(wc.handle) as w:
        yield ali, a, wc, w


def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, a: FakeHttp, w: FakeHttp) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    values = {
        "OUTCALL_SMS_ACCESS_KEY_ID": "LTAIkey",
        "OUTCALL_SMS_ACCESS_KEY_SECRET": "sekret",
        "OUTCALL_SMS_SIGN_NAME": "外呼助手",
        "OUTCALL_SMS_ENDPOINT": a.url + "/",
        "OUTCALL_SMS_TEMPLATES": json.dumps(
            {"trial_address": {"template_code": "SMS_465", "params": {"name": "name", "link": "$wecom_link"}}}
        ),
        "OUTCALL_WECOM_CORP_ID": CORP_ID,
        "OUTCALL_WECOM_SECRET": SECRET,
        "OUTCALL_WECOM_API_BASE": w.url,
        "OUTCALL_WECOM_ROBOT_KEYS": json.dumps({"sales": "robot-key-1"}),
        "OUTCALL_WECOM_TEMPLATES": json.dumps(
            {
                "advisor": {
                    "robot": "sales",
                    "text": "意向 {$grade} {$phone_masked}",
                    "welcome": "您好，我是课程顾问",
                }
            }
        ),
        "OUTCALL_WECOM_LINK_URL": w.url + "/ca/cawcde06a5b8b0d6a1",
        "OUTCALL_WECOM_CALLBACK_TOKEN": CB_TOKEN,
        "OUTCALL_WECOM_CALLBACK_AES_KEY": AES,
        "OUTCALL_FOLLOW_UP_RULES": json.dumps([{"grades": ["A", "B"], "wecom": "advisor"}]),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def callback_body(
    event_xml: str, ts: str = "1700000000", nonce: str = "n0nce"
) -> tuple[dict[str, str], bytes]:
    enc = encrypt(aes_key(AES), event_xml.encode(), CORP_ID)
    body = f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    q = {"msg_signature": signature(CB_TOKEN, ts, nonce, enc), "timestamp": ts, "nonce": nonce}
    return q, body.encode()


def add_event(state: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[advisor_li]]></UserID>"
        "<ExternalUserID><![CDATA[wmEXT0001]]></ExternalUserID>"
        f"<State><![CDATA[{state}]]></State><WelcomeCode><![CDATA[WC1]]></WelcomeCode></xml>"
    )


async def test_sms_link_opened_and_contact_added_is_linked_to_the_call(
    fakes: tuple[FakeAliyun, FakeHttp, FakeWecom, FakeHttp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ali, a, wc, w = fakes
    env(monkeypatch, tmp_path, a, w)
    settings = load_settings(db=str(tmp_path / "o.db"))
    store = SqliteStore(tmp_path / "o.db")
    delivery = await open_delivery(settings, store)
    assert sorted(s.name for s in delivery.sinks) == ["followup:sms", "followup:wecom"]
    o = CallOutcome(
        call_id="3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
        campaign="spring",
        dialplan="trial-class-zh",
        to="+8613812345678",
        disposition=Disposition.ANSWERED,
        grade="A",
        started_at=T0,
        ended_at=T0,
        variables={"name": "王女士", "follow_up": [{"channel": "sms", "template": "trial_address"}]},
    )
    await store.save_outcome(o)
    await delivery.flush()
    # SMS (dialplan request) and the advisors' robot (grade rule) went out
    assert len(ali.sent) == 1 and ali.sent[0].out_id == o.outcome_id
    assert [m["markdown"]["content"] for m in wc.robot_messages] == ["意向 A 138****5678"]
    # the callee opens the link from the SMS
    async with httpx.AsyncClient() as http:
        assert (await http.get(ali.sent[0].params["link"])).json()["errcode"] == 0
    assert wc.link_opens == [o.call_id]

    app = create_app(settings, store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://outcall") as api:
        # the URL check WeCom does when the callback is saved in the admin console
        echo = encrypt(aes_key(AES), b"5927782489442352469", CORP_ID)
        q = {
            "msg_signature": signature(CB_TOKEN, "1", "2", echo),
            "timestamp": "1",
            "nonce": "2",
            "echostr": echo,
        }
        r = await api.get("/wecom/callback", params=q)
        assert (r.status_code, r.text) == (200, "5927782489442352469")
        q["msg_signature"] = "0" * 40
        assert (await api.get("/wecom/callback", params=q)).status_code == 403
        # the add-contact event, State = the customer_channel of the link
        params, body = callback_body(add_event(wc.link_opens[0]))
        r = await api.post("/wecom/callback", params=params, content=body)
        assert (r.status_code, r.text) == (200, "success")
        bad = dict(params, timestamp="1700000001")
        assert (await api.post("/wecom/callback", params=bad, content=body)).status_code == 403
        huge = b"<xml>" + b"x" * 70_000 + b"</xml>"
        assert (await api.post("/wecom/callback", params=params, content=huge)).status_code == 413
        await app.state.wecom_callback.drain()
    linked = WecomContacts(store).list_sync()
    assert linked == [
        {
            "external_userid": "wmEXT0001",
            "user_id": "advisor_li",
            "call_id": o.call_id,
            "outcome_id": o.outcome_id,
            "campaign": "spring",
            "state": o.call_id,
        }
    ]
    # the grade rule asked for the wecom template, but the welcome comes from the dialplan's request only
    assert wc.msg_templates == []
    await delivery.close()
    store.close()


async def test_welcome_queued_for_the_advisor_when_the_dialplan_asked_for_wecom(
    fakes: tuple[FakeAliyun, FakeHttp, FakeWecom, FakeHttp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ali, a, wc, w = fakes
    env(monkeypatch, tmp_path, a, w)
    settings = load_settings(db=str(tmp_path / "o.db"))
    store = SqliteStore(tmp_path / "o.db")
    o = CallOutcome(
        call_id="c0ffee",
        to="+8613812345678",
        disposition=Disposition.ANSWERED,
        started_at=T0,
        ended_at=T0,
        variables={"follow_up": [{"channel": "wecom", "template": "advisor"}]},
    )
    store.save_outcome_sync(o, sinks=[])
    app = create_app(settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://outcall") as api:
        params, body = callback_body(add_event("c0ffee"))
        assert (await api.post("/wecom/callback", params=params, content=body)).text == "success"
        # WeCom re-sends a callback it got no answer to: linked once
        assert (await api.post("/wecom/callback", params=params, content=body)).text == "success"
        params, body = callback_body(add_event("not-a-call-of-ours").replace("wmEXT0001", "wmEXT0002"))
        assert (await api.post("/wecom/callback", params=params, content=body)).text == "success"
        await app.state.wecom_callback.drain()
    assert [m["sender"] for m in wc.msg_templates] == ["advisor_li"]  # once, despite the re-sent callback
    assert wc.msg_templates[0]["external_userid"] == ["wmEXT0001"]
    assert wc.msg_templates[0]["text"] == {"content": "您好，我是课程顾问"}
    rows = WecomContacts(store).list_sync()
    assert [(r["external_userid"], r["outcome_id"]) for r in rows] == [
        ("wmEXT0001", o.outcome_id),
        ("wmEXT0002", None),
    ]
    store.close()


async def test_callback_not_configured_is_404(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    store = SqliteStore(tmp_path / "o.db")
    app = create_app(load_settings(db=str(tmp_path / "o.db")), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://outcall") as api:
        r = await api.post("/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "2"})
    assert r.status_code == 404
    store.close()


async def test_rule_naming_an_unknown_template_fails_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OUTCALL_FOLLOW_UP_RULES", json.dumps([{"grades": ["A"], "sms": "missing"}]))
    store = SqliteStore(tmp_path / "o.db")
    with pytest.raises(ConfigError, match="OUTCALL_SMS_TEMPLATES"):
        await open_delivery(load_settings(), store)
    monkeypatch.delenv("OUTCALL_FOLLOW_UP_RULES")
    monkeypatch.setenv("OUTCALL_WECOM_ROBOT_KEYS", json.dumps({"sales": "k"}))
    monkeypatch.setenv("OUTCALL_WECOM_TEMPLATES", json.dumps({"advisor": {"robot": "sales"}}))
    with pytest.raises(ConfigError, match="OUTCALL_WECOM_LINK_URL"):  # the default text has the link
        await open_delivery(load_settings(), store)
    monkeypatch.delenv("OUTCALL_WECOM_TEMPLATES")
    monkeypatch.setenv("OUTCALL_SMS_ACCESS_KEY_ID", "LTAIkey")
    with pytest.raises(ConfigError, match="OUTCALL_SMS_ACCESS_KEY_SECRET"):
        await open_delivery(load_settings(), store)
    store.close()
