"""WeCom: callback crypto against vectors built with `cryptography` directly, and the API client against a
loopback qyapi that issues/expires tokens, rate-limits robots and checks acquisition links."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from engine.clock import VirtualClock
from gateway.wecom import WecomClient, WecomError, acquisition_url
from gateway.wecom_crypto import (
    CallbackCrypto,
    WecomCryptoError,
    aes_key,
    decrypt,
    encrypt,
    parse_event,
    pkcs7_pad,
    pkcs7_unpad,
    signature,
    verify,
)
from tests.gateway.fake_http import FakeHttp
from tests.gateway.fake_wecom import CORP_ID, SECRET, FakeWecom

AES_KEY_TEXT = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"  # 43 chars, as the admin console shows
TOKEN = "QDG6eK"

ADD_EVENT = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType>"
    "<UserID><![CDATA[advisor_li]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA]]>"
    "</ExternalUserID><State><![CDATA[{state}]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>"
)


def reference_encrypt(key_text: str, msg: bytes, corp: str, rnd: bytes) -> str:
    """WXBizMsgCrypt's layout built with cryptography's own PKCS7(256) padder (independent of ours)."""
    key = base64.b64decode(key_text + "=")
    padder = padding.PKCS7(256).padder()
    plain = padder.update(rnd + struct.pack("!I", len(msg)) + msg + corp.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES256(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def test_key_is_43_chars_plus_equals_to_32_bytes() -> None:
    assert len(aes_key(AES_KEY_TEXT)) == 32
    with pytest.raises(WecomCryptoError, match="43"):
        aes_key(AES_KEY_TEXT[:-1])


def test_encrypt_matches_reference_vector_and_round_trips() -> None:
    key = aes_key(AES_KEY_TEXT)
    msg = ADD_EVENT.format(corp=CORP_ID, state="c" * 32).encode()
    rnd = b"0123456789abcdef"
    ours = encrypt(key, msg, CORP_ID, random16=rnd)
    assert ours == reference_encrypt(AES_KEY_TEXT, msg, CORP_ID, rnd)
    assert decrypt(key, ours, CORP_ID) == msg
    assert decrypt(key, reference_encrypt(AES_KEY_TEXT, b"echo-1234", CORP_ID, rnd), CORP_ID) == b"echo-1234"


def test_pkcs7_uses_32_byte_blocks() -> None:
    assert len(pkcs7_pad(b"x" * 32)) == 64 and pkcs7_pad(b"x" * 32)[-1] == 32
    assert pkcs7_pad(b"x" * 31)[-1:] == b"\x01"
    with pytest.raises(WecomCryptoError):
        pkcs7_unpad(b"x" * 31 + b"\x21")


def test_wrong_key_or_receiver_is_refused() -> None:
    key = aes_key(AES_KEY_TEXT)
    enc = encrypt(key, b"<xml/>", CORP_ID)
    with pytest.raises(WecomCryptoError, match="receiveid"):
        decrypt(key, enc, "ww_other_corp")
    other = aes_key("A" * 43)
    with pytest.raises(WecomCryptoError):
        decrypt(other, enc, CORP_ID)


def test_msg_signature_is_sha1_of_sorted_parts() -> None:
    parts = [TOKEN, "1409659813", "1372623149", "ENCRYPTED"]
    want = hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    assert signature(*parts) == want
    assert verify(TOKEN, "1409659813", "1372623149", "ENCRYPTED", want)
    assert not verify(TOKEN, "1409659814", "1372623149", "ENCRYPTED", want)


def test_callback_post_body_verified_decrypted_and_parsed() -> None:
    cc = CallbackCrypto(TOKEN, AES_KEY_TEXT, CORP_ID)
    enc = encrypt(cc.key, ADD_EVENT.format(corp=CORP_ID, state="call-42").encode(), CORP_ID)
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[]]></AgentID>"
        f"<Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    ).encode()
    sig = signature(TOKEN, "1409659813", "nonce1", enc)
    ev = cc.open(sig, "1409659813", "nonce1", body)
    assert ev.is_add_contact
    assert (ev.user_id, ev.external_user_id, ev.state, ev.welcome_code) == (
        "advisor_li",
        "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",
        "call-42",
        "WELCOMECODE",
    )
    with pytest.raises(WecomCryptoError, match="msg_signature"):
        cc.open(sig, "1409659814", "nonce1", body)
    echo = encrypt(cc.key, b"8012345678901234", CORP_ID)
    assert cc.verify_url(signature(TOKEN, "1", "2", echo), "1", "2", echo) == b"8012345678901234"


def test_non_contact_events_are_not_add_contact() -> None:
    ev = parse_event(
        b"<xml><MsgType>event</MsgType><Event>change_external_contact</Event><ChangeType>del_external_contact</ChangeType></xml>"
    )
    assert not ev.is_add_contact


def test_acquisition_url_appends_customer_channel_and_limits_it() -> None:
    base = "https://work.weixin.qq.com/ca/cawcde06a5b8b0d6a1?x=1&customer_channel=old"
    url = acquisition_url(base, "c" * 64)
    assert url == "https://work.weixin.qq.com/ca/cawcde06a5b8b0d6a1?x=1&customer_channel=" + "c" * 64
    with pytest.raises(ValueError, match="64"):
        acquisition_url(base, "c" * 65)


@pytest.fixture
async def wecom() -> AsyncIterator[tuple[FakeWecom, FakeHttp]]:
    fake = FakeWecom()
    async with FakeHttp(fake.handle) as srv:
        yield fake, srv


async def test_acquisition_link_is_accepted_by_the_link_page(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    async with httpx.AsyncClient() as http:
        ok = (await http.get(acquisition_url(srv.url + "/ca/cawcde06a5b8b0d6a1", "a" * 64))).json()
        too_long = (await http.get(srv.url + "/ca/cawcde06a5b8b0d6a1?customer_channel=" + "a" * 65)).json()
    assert ok["errcode"] == 0 and fake.link_opens == ["a" * 64]
    assert too_long["errcode"] == 40058


def client(srv: FakeHttp, clock: VirtualClock | None = None, secret: str = SECRET) -> WecomClient:
    return WecomClient(CORP_ID, secret, base_url=srv.url, clock=clock)


async def test_token_cached_then_refreshed_once_on_expiry(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    c = client(srv)
    try:
        await c.add_msg_template("advisor_li", ["wmA"], "您好")
        await c.add_msg_template("advisor_li", ["wmB"], "您好")
        assert fake.token_requests == 1
        fake.expire_all()  # next call is answered 42001
        msgid = await c.add_msg_template("advisor_li", ["wmC"], "您好")
        assert msgid.startswith("msg")
        assert fake.token_requests == 2
        fake.tokens.clear()  # 40014 invalid token
        await c.add_msg_template("advisor_li", ["wmD"], "您好")
        assert fake.token_requests == 3
    finally:
        await c.close()
    assert [m["external_userid"] for m in fake.msg_templates] == [["wmA"], ["wmB"], ["wmC"], ["wmD"]]
    assert fake.msg_templates[0]["sender"] == "advisor_li"
    assert fake.msg_templates[0]["text"] == {"content": "您好"}


async def test_token_refreshed_before_it_expires(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    clock = VirtualClock()
    c = client(srv, clock)
    try:
        t1 = await c.access_token()
        await clock.advance(7200 - 301)
        assert await c.access_token() == t1
        await clock.advance(2)
        assert await c.access_token() != t1
    finally:
        await c.close()
    assert fake.token_requests == 2


async def test_wrong_secret_is_permanent_and_names_the_setting(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    _fake, srv = wecom
    c = client(srv, secret="nope")
    try:
        with pytest.raises(WecomError) as ei:
            await c.add_msg_template("advisor_li", ["wmA"], "hi")
    finally:
        await c.close()
    assert ei.value.errcode == 40001 and ei.value.permanent
    assert "OUTCALL_WECOM_SECRET" in str(ei.value)


async def test_robot_backs_off_on_45009_then_recovers(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    fake.robot_limit = 3  # the service is stricter than our local bucket here
    clock = VirtualClock()
    c = client(srv, clock)
    try:
        for i in range(3):
            await c.robot_send("robot-key-1", f"**lead {i}**")
        with pytest.raises(WecomError) as ei:
            await c.robot_send("robot-key-1", "**lead 3**")
        assert ei.value.errcode == 45009 and not ei.value.permanent
        sent_before = len(srv.requests)
        with pytest.raises(WecomError, match="backing off"):
            await c.robot_send("robot-key-1", "**lead 3**")
        assert len(srv.requests) == sent_before  # no request during the back-off
        await clock.advance(61)
        fake.new_minute()
        await c.robot_send("robot-key-1", "**lead 3**")
        with pytest.raises(WecomError) as ei:
            await c.robot_send("robot-key-unknown", "x")
        assert ei.value.errcode == 93000 and ei.value.permanent
    finally:
        await c.close()
    assert [m["markdown"]["content"] for m in fake.robot_messages] == [f"**lead {i}**" for i in range(4)]


async def test_robot_local_limit_is_20_a_minute(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    fake.robot_limit = 1000
    clock = VirtualClock()
    c = client(srv, clock)
    try:
        for i in range(20):
            await c.robot_send("robot-key-1", f"m{i}", msgtype="text")
        late = asyncio.create_task(c.robot_send("robot-key-1", "m20", msgtype="text"))
        await clock.advance(2.9)
        assert not late.done() and len(fake.robot_messages) == 20
        await clock.advance(0.2)
        await asyncio.wait_for(late, 2)
    finally:
        await c.close()
    assert fake.robot_messages[-1] == {"msgtype": "text", "text": {"content": "m20"}}


async def test_robot_slot_too_far_away_is_left_to_the_outbox(wecom: tuple[FakeWecom, FakeHttp]) -> None:
    fake, srv = wecom
    clock = VirtualClock()
    c = WecomClient(CORP_ID, SECRET, base_url=srv.url, clock=clock, robot_per_min=2, robot_max_wait_s=5.0)
    try:
        await c.robot_send("robot-key-1", "a")
        await c.robot_send("robot-key-1", "b")
        with pytest.raises(WecomError, match="next slot in 30 s") as ei:  # 2/min: a slot every 30 s
            await c.robot_send("robot-key-1", "c")
        assert not ei.value.permanent
    finally:
        await c.close()
    assert len(fake.robot_messages) == 2
