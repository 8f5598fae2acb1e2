"""Aliyun SendSms: the documented signature vector, and the client against a loopback Dysmsapi that
recomputes signatures and answers with Aliyun's error bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from engine.clock import VirtualClock
from gateway.sms_aliyun import (
    AliyunSmsClient,
    AliyunSmsConfig,
    SmsError,
    TokenBucket,
    check_reply,
    mainland_number,
    percent_encode,
    send_sms_params,
    sign,
    signed_query,
)
from tests.gateway.fake_aliyun import FakeAliyun, server_sign
from tests.gateway.fake_http import FakeHttp

KEY_ID, SECRET = "LTAI5tTestKeyId", "TestSecretValue0123456789abcd"


def test_signature_matches_aliyun_documented_example() -> None:
    # the worked example of Aliyun's SMS "HTTP协议及签名" page (AccessKeySecret testSecret)
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert sign(params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert signed_query(params, "testSecret").startswith("Signature=zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D&")


def test_percent_encoding_is_rfc3986_as_aliyun_wants() -> None:
    assert percent_encode("a b*c~d+e/f") == "a%20b%2Ac~d%2Be%2Ff"
    assert percent_encode("试") == "%E8%AF%95"


def test_params_carry_every_common_parameter_and_template_json() -> None:
    p = send_sms_params(
        access_key_id=KEY_ID,
        phone="13800138000",
        sign_name="外呼",
        template_code="SMS_1",
        template_param={"name": "王女士", "link": "https://x/y?z=1"},
        out_id="oid",
        now=datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC),
        nonce="n1",
    )
    assert p["Timestamp"] == "2026-03-02T10:00:05Z"
    assert p["TemplateParam"] == '{"name":"王女士","link":"https://x/y?z=1"}'
    assert {p["Action"], p["Version"], p["SignatureVersion"], p["SignatureMethod"], p["Format"]} == {
        "SendSms",
        "2017-05-25",
        "1.0",
        "HMAC-SHA1",
        "JSON",
    }
    assert server_sign(p, SECRET)[0] == sign(p, SECRET)  # independent encoder agrees


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("+8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("+85291234567", "0085291234567"),
    ],
)
def test_numbers_go_out_in_sendsms_form(raw: str, want: str) -> None:
    assert mainland_number(raw) == want


@pytest.fixture
async def aliyun() -> AsyncIterator[tuple[FakeAliyun, FakeHttp]]:
    fake = FakeAliyun(keys={KEY_ID: SECRET}, sign_names={"外呼助手"}, templates={"SMS_465"})
    async with FakeHttp(fake.handle) as srv:
        yield fake, srv


def client(srv: FakeHttp, **kw: object) -> AliyunSmsClient:
    cfg = AliyunSmsConfig.model_validate(
        {
            "access_key_id": KEY_ID,
            "access_key_secret": SecretStr(SECRET),
            "sign_name": "外呼助手",
            "endpoint": srv.url + "/",
            **kw,
        }
    )
    return AliyunSmsClient(cfg)


async def test_send_is_accepted_with_out_id_and_params(aliyun: tuple[FakeAliyun, FakeHttp]) -> None:
    fake, srv = aliyun
    c = client(srv)
    try:
        biz = await c.send(
            "+8613800138000", "SMS_465", {"name": "王女士 *~"}, out_id="outcome-1", sign_name=None
        )
    finally:
        await c.close()
    assert biz.endswith("^0")
    assert len(fake.sent) == 1
    s = fake.sent[0]
    assert (s.phone, s.template_code, s.params, s.out_id) == (
        "13800138000",
        "SMS_465",
        {"name": "王女士 *~"},
        "outcome-1",
    )
    assert srv.requests[0].method == "GET" and srv.requests[0].path == "/"


@pytest.mark.parametrize(
    ("cfg", "phone", "template", "code", "setting"),
    [
        (
            {"access_key_secret": SecretStr("wrong")},
            "13800138000",
            "SMS_465",
            "SignatureDoesNotMatch",
            "OUTCALL_SMS_ACCESS_KEY_SECRET",
        ),
        (
            {"access_key_id": "LTAInope"},
            "13800138000",
            "SMS_465",
            "InvalidAccessKeyId.NotFound",
            "OUTCALL_SMS_ACCESS_KEY_ID",
        ),
        (
            {"sign_name": "没批的签名"},
            "13800138000",
            "SMS_465",
            "isv.SMS_SIGNATURE_ILLEGAL",
            "OUTCALL_SMS_SIGN_NAME",
        ),
        ({}, "13800138000", "SMS_000", "isv.SMS_TEMPLATE_ILLEGAL", "OUTCALL_SMS_TEMPLATES"),
        ({}, "12345", "SMS_465", "isv.MOBILE_NUMBER_ILLEGAL", "contact"),
    ],
)
async def test_configuration_errors_are_permanent_and_name_the_setting(
    aliyun: tuple[FakeAliyun, FakeHttp],
    cfg: dict[str, object],
    phone: str,
    template: str,
    code: str,
    setting: str,
) -> None:
    fake, srv = aliyun
    c = client(srv, **cfg)
    try:
        with pytest.raises(SmsError) as ei:
            await c.send(phone, template, {}, out_id="o", sign_name=None)
    finally:
        await c.close()
    assert ei.value.code == code
    assert ei.value.permanent
    assert setting in str(ei.value)
    assert ei.value.request_id
    assert fake.sent == []


@pytest.mark.parametrize("code", ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User"])
async def test_flow_control_is_retried_later(aliyun: tuple[FakeAliyun, FakeHttp], code: str) -> None:
    fake, srv = aliyun
    fake.script = [code]
    c = client(srv)
    try:
        with pytest.raises(SmsError) as ei:
            await c.send("13800138000", "SMS_465", {}, out_id="o", sign_name=None)
        assert not ei.value.permanent and ei.value.code == code
        await c.send("13800138000", "SMS_465", {}, out_id="o", sign_name=None)  # nonce fresh, accepted
    finally:
        await c.close()
    assert len(fake.sent) == 1


def test_unknown_and_server_errors() -> None:
    with pytest.raises(SmsError) as ei:
        check_reply(503, {"Code": "ServiceUnavailable", "Message": "x", "RequestId": "r"})
    assert not ei.value.permanent
    with pytest.raises(SmsError) as ei:
        check_reply(200, {"Code": "isv.SOMETHING_NEW", "Message": "x", "RequestId": "r"})
    assert ei.value.permanent
    with pytest.raises(SmsError):
        check_reply(502, "<html>bad gateway</html>")


async def test_network_failure_is_retryable() -> None:
    cfg = AliyunSmsConfig(
        access_key_id=KEY_ID,
        access_key_secret=SecretStr(SECRET),
        sign_name="s",
        endpoint="http://127.0.0.1:9/",
    )
    c = AliyunSmsClient(cfg, client=httpx.AsyncClient(timeout=2))
    try:
        with pytest.raises(Exception) as ei:
            await c.send("13800138000", "SMS_465", {}, out_id="o", sign_name=None)
    finally:
        await c._client.aclose()
    assert getattr(ei.value, "permanent", None) is False


async def test_token_bucket_spaces_sends_on_the_clock() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    await bucket.take()
    await bucket.take()
    assert bucket.try_take() == pytest.approx(0.5)
    third = asyncio.create_task(bucket.take())
    await clock.advance(0.4)
    assert not third.done()
    await clock.advance(0.1)
    await asyncio.wait_for(third, 1)
