"""Webhook sink: every outcome an endpoint's filters accept is POSTed as JSON (the outcome's
``model_dump(mode="json")``), signed with HMAC-SHA256.

Signature header (Stripe-style)::

    X-Outcall-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Receivers recompute the HMAC over the *raw* request body (before any JSON parsing), compare in constant
time, and reject a timestamp more than the replay window (default 300 s) away from their clock; within
the window they dedupe by ``X-Outcall-Id`` (the outcome id), which also makes our retries harmless.
`verify_signature` below is self-contained (standard library only) so receivers can copy it.

Responses: 2xx delivered; 408, 425, 429 and 5xx (and network errors) retried with backoff by the outbox;
any other status is permanent (the row goes to the dead letters; `outcall outbox retry --dead` after the
receiver is fixed).

Configuration (settings only, never code): ``OUTCALL_WEBHOOKS`` as a JSON list, or ``[[webhooks]]`` in the
TOML file, each with ``url``, ``secret`` (or ``secret_env``: the name of an environment variable holding
it), optional ``name`` and ``filters`` (``grades``, ``dispositions``, ``campaigns``, ``tags``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from engine.errors import ConfigError
from engine.outcome import CallOutcome, Grade
from gateway.delivery import DeliveryError

if TYPE_CHECKING:
    import httpx

SIGNATURE_HEADER = "X-Outcall-Signature"
ID_HEADER = "X-Outcall-Id"
REPLAY_WINDOW_S = 300
RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The X-Outcall-Signature value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = REPLAY_WINDOW_S,
    now: float | None = None,
) -> bool:
    """Receiver side: True when ``header`` (X-Outcall-Signature) signs the raw ``body`` with ``secret``
    and its timestamp is within ``tolerance_s`` of ``now`` (replays outside the window are refused;
    dedupe by X-Outcall-Id inside it). Standard library only: copy it into your receiver."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, sep, v = item.strip().partition("=")
        if sep:
            parts.setdefault(k, []).append(v)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = hmac.new(secret, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, sig) for sig in parts.get("v1", []))


class WebhookFilters(BaseModel):
    """Which outcomes an endpoint gets; an unset list lets everything through."""

    model_config = ConfigDict(extra="forbid")

    grades: list[Grade] | None = None
    dispositions: list[str] | None = None
    campaigns: list[str] | None = None
    tags: list[str] | None = Field(None, description="any of these tags")

    def accepts(self, o: CallOutcome) -> bool:
        if self.grades is not None and o.grade not in self.grades:
            return False
        if self.dispositions is not None and o.disposition.value not in self.dispositions:
            return False
        if self.campaigns is not None and (o.campaign or "adhoc") not in self.campaigns:
            return False
        return self.tags is None or any(t in o.tags for t in self.tags)


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    name: str | None = Field(None, description="outbox sink name suffix (default: derived from the URL)")
    secret: SecretStr | None = None
    secret_env: str | None = Field(None, description="environment variable holding the secret")
    filters: WebhookFilters = Field(default_factory=WebhookFilters)
    timeout_s: float = 10.0
    headers: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(
        1, ge=1, le=1000, description="1: one outcome per POST; N: up to N outcomes per POST as a JSON array"
    )
    concurrency: int = Field(4, ge=1, le=64, description="POSTs in flight to this endpoint")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {v!r} must start with http:// or https://")
        return v

    @property
    def sink_name(self) -> str:
        if self.name:
            return f"webhook:{self.name}"
        return "webhook:" + hashlib.sha256(self.url.encode()).hexdigest()[:10]

    def secret_bytes(self) -> bytes:
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        if self.secret_env:
            val = os.environ.get(self.secret_env)
            if val:
                return val.encode()
            raise ConfigError(
                f"webhook {self.sink_name}: environment variable {self.secret_env} is not set",
                hint=f"export {self.secret_env}=<shared secret>",
            )
        raise ConfigError(
            f"webhook {self.sink_name} ({self.url}) has no secret",
            hint="give it `secret` or `secret_env` in OUTCALL_WEBHOOKS / [[webhooks]]",
        )


class WebhookSink:
    """Outbox sink for one endpoint. One pooled httpx.AsyncClient per endpoint."""

    def __init__(self, cfg: WebhookConfig, *, client: httpx.AsyncClient | None = None) -> None:
        import httpx

        self.cfg = cfg
        self._secret = cfg.secret_bytes()  # fail at startup, not at the first outcome
        # TCP_NODELAY: httpcore writes headers and body separately; with Nagle + delayed ACKs every
        # request would stall ~40 ms on a keep-alive connection
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client = client or httpx.AsyncClient(timeout=cfg.timeout_s, transport=transport)
        self._own_client = client is None

    @property
    def name(self) -> str:
        return self.cfg.sink_name

    def accepts(self, outcome: CallOutcome) -> bool:
        return self.cfg.filters.accepts(outcome)

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size

    @property
    def concurrency(self) -> int:
        return self.cfg.concurrency

    async def deliver(self, outcome: object) -> None:
        data: Any = outcome.model_dump(mode="json") if isinstance(outcome, CallOutcome) else outcome
        if not isinstance(data, dict) or not data.get("outcome_id"):
            raise DeliveryError(f"{self.name}: payload has no outcome_id", permanent=True)
        if self.cfg.batch_size > 1:  # a batching endpoint always gets an array, even of one
            await self.deliver_batch([data])
            return
        await self._post(
            json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
            {ID_HEADER: str(data["outcome_id"])},
        )

    async def deliver_batch(self, outcomes: list[dict[str, Any]]) -> None:
        """Several outcomes in one signed POST: a JSON array; receivers dedupe each by its outcome_id."""
        if any(not isinstance(o, dict) or not o.get("outcome_id") for o in outcomes):
            raise DeliveryError(f"{self.name}: payload has no outcome_id", permanent=True)
        body = json.dumps(outcomes, ensure_ascii=False, separators=(",", ":")).encode()
        await self._post(body, {"X-Outcall-Batch": str(len(outcomes))})

    async def _post(self, body: bytes, extra: dict[str, str]) -> None:
        import httpx

        headers = {
            **self.cfg.headers,
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
            "X-Outcall-Event": "outcome",
            "User-Agent": "outcall-webhook/1",
            **extra,
        }
        try:
            resp = await self._client.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{self.name}: {type(e).__name__}: {e}") from e
        code = resp.status_code
        if 200 <= code < 300:
            return
        detail = f"{self.name}: HTTP {code} {resp.text[:200]!r}"
        raise DeliveryError(detail, permanent=not (code >= 500 or code in RETRYABLE_STATUS))

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
