"""WeCom (企业微信) server API client: access token cache, group robot, customer-acquisition links,
``externalcontact/add_msg_template``.

- ``GET /cgi-bin/gettoken?corpid=&corpsecret=`` -> ``{"errcode":0,"access_token":..,"expires_in":7200}``;
  cached and refreshed ``refresh_margin_s`` before it expires; a call answered 40014 (invalid token),
  42001 (expired) or 40001 (invalid credential) refreshes the token once and is retried once.
- Group robot: ``POST /cgi-bin/webhook/send?key=KEY`` with ``{"msgtype":"markdown"|"text", ...}``. WeCom
  allows 20 messages a minute per robot: a local token bucket keeps us under it, and an errcode 45009
  (frequency limit) backs the robot off for a minute and is retried by the outbox.
- Customer-acquisition link (获客链接): the link's ``url`` (from ``customer_acquisition/create_link``)
  with ``customer_channel=<call id>`` appended; WeCom returns it as ``State`` in the add-contact
  callback, so the contact is attributed to the call. At most 64 bytes.
- Every API answer is ``{"errcode": int, "errmsg": str, ...}``; errcode 0 is success.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from engine.clock import Clock, RealClock
from gateway.delivery import DeliveryError
from gateway.sms_aliyun import TokenBucket

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("outcall.wecom")

API_BASE = "https://qyapi.weixin.qq.com"
TOKEN_ERRORS = frozenset({40014, 42001, 40001})
RATE_LIMITED = 45009
#: errcodes worth retrying later: system busy, frequency limits
RETRY_ERRCODES = frozenset({-1, 45009, 45033, 45011})
CUSTOMER_CHANNEL_MAX_BYTES = 64

FIX_HINTS = {
    40013: "OUTCALL_WECOM_CORP_ID is not a valid CorpID",
    40001: "OUTCALL_WECOM_SECRET does not belong to this corp / app",
    41001: "no access_token was sent (bug)",
    48002: "the app lacks the API permission: grant 客户联系 to it in the admin console",
    60020: "the server's IP is not in the app's trusted IP list (企业可信IP)",
    93000: "OUTCALL_WECOM_ROBOT_KEYS: the robot key is invalid or the robot was removed",
    84061: "the external contact is not a customer of this sender (add_msg_template)",
}


class WecomError(DeliveryError):
    def __init__(self, message: str, *, errcode: int, permanent: bool) -> None:
        super().__init__(message, permanent=permanent)
        self.errcode = errcode


def raise_for_errcode(what: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or "errcode" not in body:
        raise WecomError(f"wecom {what}: not a WeCom answer: {str(body)[:200]}", errcode=-2, permanent=False)
    code = int(body["errcode"])
    if code == 0:
        return body
    msg = f"wecom {what}: errcode {code} {body.get('errmsg', '')}"
    if code in FIX_HINTS:
        msg += f"; fix: {FIX_HINTS[code]}"
    raise WecomError(msg, errcode=code, permanent=code not in RETRY_ERRCODES)


def acquisition_url(link_url: str, call_id: str) -> str:
    """The acquisition link with ``customer_channel=<call id>``; ValueError past 64 bytes."""
    if len(call_id.encode()) > CUSTOMER_CHANNEL_MAX_BYTES:
        raise ValueError(
            f"customer_channel {call_id!r} is {len(call_id.encode())} bytes; WeCom allows "
            f"{CUSTOMER_CHANNEL_MAX_BYTES}"
        )
    parts = urlsplit(link_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "customer_channel"]
    query.append(("customer_channel", call_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class _Token:
    value: str
    expires_at: float


class WecomClient:
    """One corp app (CorpID + app Secret). Async; one pooled httpx client."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        base_url: str = API_BASE,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        refresh_margin_s: float = 300.0,
        robot_per_min: int = 20,
        robot_max_wait_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        import httpx

        self.corp_id = corp_id
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.clock: Clock = clock or RealClock()
        self.refresh_margin_s = refresh_margin_s
        self.robot_per_min = robot_per_min
        self.robot_max_wait_s = robot_max_wait_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._own = client is None
        self._token: _Token | None = None
        self._robots: dict[str, TokenBucket] = {}
        self._robot_backoff_until: dict[str, float] = {}
        self.token_fetches = 0

    async def _request(self, what: str, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            resp = await self._client.request(method, self.base_url + path, **kw)
        except httpx.HTTPError as e:
            raise WecomError(f"wecom {what}: {type(e).__name__}: {e}", errcode=-2, permanent=False) from e
        try:
            return resp.json()
        except ValueError:
            return {"errcode": -1 if resp.status_code >= 500 else -3, "errmsg": f"HTTP {resp.status_code}"}

    # ---- access token
    async def access_token(self, *, force: bool = False) -> str:
        if not self.corp_id or not self._secret:
            raise WecomError(
                "wecom: no app credentials; set OUTCALL_WECOM_CORP_ID and OUTCALL_WECOM_SECRET",
                errcode=-4,
                permanent=True,
            )
        now = self.clock.monotonic()
        if not force and self._token is not None and now < self._token.expires_at - self.refresh_margin_s:
            return self._token.value
        body = raise_for_errcode(
            "gettoken",
            await self._request(
                "gettoken",
                "GET",
                "/cgi-bin/gettoken",
                params={"corpid": self.corp_id, "corpsecret": self._secret},
            ),
        )
        self.token_fetches += 1
        self._token = _Token(str(body["access_token"]), now + float(body.get("expires_in", 7200)))
        return self._token.value

    async def call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to ``path`` with the token; one refresh + retry on a token error."""
        for attempt in (0, 1):
            token = await self.access_token(force=attempt == 1)
            body = await self._request(what, "POST", path, params={"access_token": token}, json=payload)
            if isinstance(body, dict) and body.get("errcode") in TOKEN_ERRORS and attempt == 0:
                log.info("wecom %s: errcode %s, refreshing the access token once", what, body.get("errcode"))
                continue
            return raise_for_errcode(what, body)
        raise AssertionError("unreachable")

    # ---- customer contact
    async def add_msg_template(
        self,
        sender: str,
        external_userids: list[str],
        text: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
    ) -> str:
        """Queue a message for ``sender`` (an advisor's userid) to confirm and send to the customers;
        returns the msgid."""
        payload: dict[str, Any] = {
            "chat_type": "single",
            "external_userid": external_userids,
            "sender": sender,
            "text": {"content": text},
        }
        if attachments:
            payload["attachments"] = attachments
        body = await self.call("add_msg_template", "/cgi-bin/externalcontact/add_msg_template", payload)
        return str(body.get("msgid", ""))

    async def send_welcome(self, welcome_code: str, text: str) -> None:
        """Answer an add-contact event's WelcomeCode (valid 20 s) with a welcome message."""
        await self.call(
            "send_welcome_msg",
            "/cgi-bin/externalcontact/send_welcome_msg",
            {"welcome_code": welcome_code, "text": {"content": text}},
        )

    # ---- group robot
    async def robot_send(self, key: str, content: str, *, msgtype: str = "markdown") -> None:
        """Post to a group robot, within 20 messages a minute; 45009 backs this robot off a minute."""
        now = self.clock.monotonic()
        until = self._robot_backoff_until.get(key, 0.0)
        if now < until:
            raise WecomError(
                f"wecom robot: rate limited, backing off {until - now:.0f} s",
                errcode=RATE_LIMITED,
                permanent=False,
            )
        bucket = self._robots.get(key)
        if bucket is None:
            bucket = self._robots[key] = TokenBucket(
                self.robot_per_min / 60.0, float(self.robot_per_min), clock=self.clock
            )
        wait = bucket.try_take()
        if wait > self.robot_max_wait_s:  # the outbox retries it later rather than holding a slot
            raise WecomError(
                f"wecom robot: {self.robot_per_min}/min reached, next slot in {wait:.0f} s",
                errcode=RATE_LIMITED,
                permanent=False,
            )
        if wait > 0:
            await self.clock.sleep(wait)
            await bucket.take()
        body = await self._request(
            "robot",
            "POST",
            "/cgi-bin/webhook/send",
            params={"key": key},
            json={"msgtype": msgtype, msgtype: {"content": content}},
        )
        try:
            raise_for_errcode("robot", body)
        except WecomError as e:
            if e.errcode == RATE_LIMITED:
                self._robot_backoff_until[key] = self.clock.monotonic() + 60.0
            raise

    async def close(self) -> None:
        if self._own:
            await self._client.aclose()
