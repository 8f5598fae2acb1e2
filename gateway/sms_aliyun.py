"""SMS through Aliyun Dysmsapi ``SendSms`` (RPC style, signature version 1.0).

The request is a GET to ``https://dysmsapi.aliyuncs.com/`` with every parameter in the query::

    AccessKeyId, Action=SendSms, Format=JSON, RegionId, SignatureMethod=HMAC-SHA1, SignatureNonce,
    SignatureVersion=1.0, Timestamp (ISO 8601 UTC, 2017-07-12T02:42:19Z), Version=2017-05-25,
    PhoneNumbers, SignName, TemplateCode, TemplateParam (JSON), OutId

signed as documented: percent-encode names and values (RFC 3986: unreserved ``A-Za-z0-9-_.~`` kept, space
``%20``, ``*`` ``%2A``), sort by name, join ``k=v`` with ``&``, ``StringToSign = "GET&%2F&" +
encode(canonical query)``, ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.

``OutId`` is the outcome id: it comes back in Aliyun's delivery receipts, so a receipt maps to its call.
Aliyun does not dedupe by it; the follow-up ledger (gateway.followup) records a sent SMS so an outbox
redelivery never sends a second one.

Answers are JSON ``{"Message", "RequestId", "Code", "BizId"}``; ``Code == "OK"`` is sent. Throttling codes
are retried by the outbox with backoff; wrong configuration (key, signature, template, sign name) and
invalid numbers are permanent, with a message naming the setting to fix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from engine.clock import Clock, RealClock
from gateway.delivery import DeliveryError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("outcall.sms")

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"

#: codes worth retrying later (flow control on Aliyun's side, or a transient fault)
RETRY_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "isp.SYSTEM_ERROR",
        "isp.RAM_PERMISSION_DENY",
        "ServiceUnavailable",
        "InternalError",
    }
)

#: permanent codes and the setting that fixes them
FIX_HINTS: Mapping[str, str] = {
    "isv.MOBILE_NUMBER_ILLEGAL": "the callee's number is not a valid mobile number (fix the contact)",
    "isv.SMS_TEMPLATE_ILLEGAL": "OUTCALL_SMS_TEMPLATES: TemplateCode unknown or not approved",
    "isv.SMS_SIGNATURE_ILLEGAL": "OUTCALL_SMS_SIGN_NAME: the sign name is not approved for this account",
    "isv.TEMPLATE_MISSING_PARAMETERS": "OUTCALL_SMS_TEMPLATES: `params` lacks a variable the template uses",
    "isv.INVALID_JSON_PARAM": "OUTCALL_SMS_TEMPLATES: template params must be strings",
    "isv.AMOUNT_NOT_ENOUGH": "top up the Aliyun account balance",
    "InvalidAccessKeyId.NotFound": "OUTCALL_SMS_ACCESS_KEY_ID: no such AccessKey",
    "InvalidAccessKeyId.Inactive": "OUTCALL_SMS_ACCESS_KEY_ID: the AccessKey is disabled",
    "SignatureDoesNotMatch": "OUTCALL_SMS_ACCESS_KEY_SECRET: it does not belong to OUTCALL_SMS_ACCESS_KEY_ID",
    "InvalidTimeStamp.Expired": "the system clock is off by more than 15 minutes (sync NTP)",
}


def percent_encode(value: str) -> str:
    """Aliyun's POP encoding: RFC 3986 unreserved characters kept, everything else %XY of its UTF-8."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def string_to_sign(params: Mapping[str, str], method: str = "GET") -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(params: Mapping[str, str], secret: str, method: str = "GET") -> str:
    """The ``Signature`` for ``params`` (without Signature) signed with the AccessKey secret."""
    mac = hmac.new((secret + "&").encode(), string_to_sign(params, method).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def send_sms_params(
    *,
    access_key_id: str,
    phone: str,
    sign_name: str,
    template_code: str,
    template_param: Mapping[str, str],
    out_id: str,
    now: datetime,
    nonce: str,
    region: str = "cn-hangzhou",
) -> dict[str, str]:
    """The SendSms query parameters, without the Signature."""
    params = {
        "AccessKeyId": access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "RegionId": region,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce,
        "SignatureVersion": "1.0",
        "Timestamp": timestamp(now),
        "Version": API_VERSION,
        "PhoneNumbers": phone,
        "SignName": sign_name,
        "TemplateCode": template_code,
        "OutId": out_id,
    }
    if template_param:
        params["TemplateParam"] = json.dumps(dict(template_param), ensure_ascii=False, separators=(",", ":"))
    return params


def signed_query(params: Mapping[str, str], secret: str) -> str:
    """The full query string: ``Signature=...&`` then the canonical parameters."""
    return f"Signature={percent_encode(sign(params, secret))}&{canonical_query(params)}"


def mainland_number(phone: str) -> str:
    """SendSms wants a bare 11-digit mainland number (or 00<cc> for others): strip +86 / 0086."""
    p = phone.strip().replace(" ", "").replace("-", "")
    if p.startswith("+86"):
        return p[3:]
    if p.startswith("0086"):
        return p[4:]
    if p.startswith("+"):
        return "00" + p[1:]
    return p


class SmsError(DeliveryError):
    """A SendSms rejection: ``code`` is Aliyun's ``Code``, ``request_id`` its ``RequestId``."""

    def __init__(self, message: str, *, code: str, request_id: str | None, permanent: bool) -> None:
        super().__init__(message, permanent=permanent)
        self.code = code
        self.request_id = request_id


def check_reply(status: int, body: Any) -> str:
    """The BizId of an accepted SendSms, else raise SmsError (permanent or retryable per the code)."""
    if not isinstance(body, dict):
        raise SmsError(
            f"aliyun sms: HTTP {status}, not a JSON object", code="", request_id=None, permanent=status < 500
        )
    code = str(body.get("Code", ""))
    rid = body.get("RequestId")
    if code == "OK":
        return str(body.get("BizId", ""))
    message = f"aliyun sms {code}: {body.get('Message', '')} (RequestId {rid})"
    if code in FIX_HINTS:
        raise SmsError(f"{message}; fix: {FIX_HINTS[code]}", code=code, request_id=rid, permanent=True)
    retry = code in RETRY_CODES or code.startswith("Throttling") or status >= 500 or status == 429
    raise SmsError(message, code=code, request_id=rid, permanent=not retry)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; `take()` waits for one on the given clock."""

    def __init__(self, rate: float, burst: float, *, clock: Clock | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock: Clock = clock or RealClock()
        self._tokens = burst
        self._at = self.clock.monotonic()

    def _refill(self) -> None:
        t = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (t - self._at) * self.rate)
        self._at = t

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds until one is there (nothing taken)."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        while (wait := self.try_take()) > 0:
            await self.clock.sleep(wait)


class SmsTemplate(BaseModel):
    """One of our template names mapped to an approved Aliyun template. ``params`` maps each template
    variable to where its value comes from: an outcome variable name (``name``, ``callback_time``), or
    ``$call_id``, ``$outcome_id``, ``$campaign``, ``$wecom_link`` (the WeCom customer-acquisition link
    carrying this call's id), or a literal in quotes (``'"周六上午"'``)."""

    model_config = ConfigDict(extra="forbid")

    template_code: str = Field(description="Aliyun TemplateCode, e.g. SMS_123456789")
    params: dict[str, str] = Field(default_factory=dict)
    sign_name: str | None = Field(None, description="overrides OUTCALL_SMS_SIGN_NAME for this template")


class AliyunSmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_key_id: str
    access_key_secret: SecretStr
    sign_name: str
    endpoint: str = DEFAULT_ENDPOINT
    region: str = "cn-hangzhou"
    rate_per_s: float = Field(10.0, gt=0, description="SendSms calls per second (token bucket)")
    burst: int = Field(10, ge=1)
    timeout_s: float = 10.0


class AliyunSmsClient:
    """Sends one SMS per call of `send`; rate-limited; errors translated to SmsError."""

    def __init__(
        self,
        cfg: AliyunSmsConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        import httpx

        self.cfg = cfg
        self.clock: Clock = clock or RealClock()
        self.bucket = TokenBucket(cfg.rate_per_s, cfg.burst, clock=self.clock)
        self._client = client or httpx.AsyncClient(timeout=cfg.timeout_s)
        self._own = client is None

    async def send(
        self, phone: str, template_code: str, params: Mapping[str, str], *, out_id: str, sign_name: str | None
    ) -> str:
        """Send; returns Aliyun's BizId. Raises SmsError / DeliveryError."""
        import httpx

        await self.bucket.take()
        query = send_sms_params(
            access_key_id=self.cfg.access_key_id,
            phone=mainland_number(phone),
            sign_name=sign_name or self.cfg.sign_name,
            template_code=template_code,
            template_param=params,
            out_id=out_id,
            now=self.clock.now(),
            nonce=uuid.uuid4().hex,
            region=self.cfg.region,
        )
        url = (
            self.cfg.endpoint.rstrip("?")
            + "?"
            + signed_query(query, self.cfg.access_key_secret.get_secret_value())
        )
        try:
            resp = await self._client.get(url)
        except httpx.HTTPError as e:
            raise DeliveryError(f"aliyun sms: {type(e).__name__}: {e}") from e
        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        return check_reply(resp.status_code, body)

    async def close(self) -> None:
        if self._own:
            await self._client.aclose()
