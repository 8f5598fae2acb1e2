"""MQTT adapter (aiomqtt): publishes every outcome QoS 1 to ``outcall/<campaign or adhoc>/outcomes`` and
subscribes to ``outcall/<campaign>/control``.

One `MqttLink` keeps one connection up in the background and reconnects with exponential backoff. A
publish returns only after the broker's PUBACK; if the connection drops first it raises DeliveryError,
so the outbox row stays pending and is sent again later (QoS 1 is at least once: the payload's
``outcome_id`` — also an MQTT v5 user property — lets the CRM dedupe). Each connection is a fresh client,
so paho never replays an old in-flight message behind the outbox's back.

URL: ``mqtt://[user[:password]@]host[:port][?client_id=ID&protocol=5|311&prefix=outcall]``;
``mqtts://`` uses TLS with the system's CA store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.errors import ConfigError
from engine.outcome import CallOutcome
from gateway.control import ControlParseError, Converted, Pause, Resume, parse_control
from gateway.delivery import DeliveryError

log = logging.getLogger("outcall.mqtt")

MessageHandler = Callable[[str, bytes], Awaitable[None] | None]
ControlHandler = Callable[[Pause | Resume | Converted], Awaitable[Any] | None]


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    client_id: str | None = None
    protocol: int | None = None  # 5, 311, or None: try 5 then fall back to 3.1.1
    prefix: str = "outcall"


def parse_mqtt_url(url: str) -> MqttTarget:
    """OUTCALL_MQTT_URL -> MqttTarget; a bad URL raises ConfigError naming the fix."""
    hint = "e.g. OUTCALL_MQTT_URL=mqtt://user:pass@127.0.0.1:1883?client_id=outcall-1"
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise ConfigError(f"OUTCALL_MQTT_URL={url!r}: {e}", hint=hint) from e
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname:
        raise ConfigError(f"OUTCALL_MQTT_URL={url!r} is not mqtt://host[:port]", hint=hint)
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    proto = q.get("protocol")
    if proto not in (None, "5", "311"):
        raise ConfigError(f"OUTCALL_MQTT_URL: protocol={proto!r}", hint="protocol=5 or protocol=311")
    tls = u.scheme in ("mqtts", "ssl")
    return MqttTarget(
        host=u.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(u.username) if u.username else None,
        password=unquote(u.password) if u.password else None,
        tls=tls,
        client_id=q.get("client_id"),
        protocol=int(proto) if proto else None,
        prefix=q.get("prefix", "outcall").strip("/") or "outcall",
    )


def topic_level(name: str | None) -> str:
    """A campaign name as one topic level: '/', '+', '#' and NUL are replaced; empty -> 'adhoc'."""
    if not name:
        return "adhoc"
    return "".join("_" if c in "/+#\0" else c for c in name)


def outcome_topic(campaign: str | None, prefix: str = "outcall") -> str:
    return f"{prefix}/{topic_level(campaign)}/outcomes"


def control_topic(campaign: str | None, prefix: str = "outcall") -> str:
    """`None` subscribes to every campaign's control topic."""
    return f"{prefix}/{'+' if campaign is None else topic_level(campaign)}/control"


class MqttLink:
    """One broker connection kept up in the background (publish + optional subscriptions)."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        backoff_s: tuple[float, float] = (0.1, 10.0),
        max_inflight: int = 1000,
        keepalive: int = 30,
    ) -> None:
        self.target = target
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.backoff_s = backoff_s
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        self.connects = 0
        self.v5: bool = target.protocol != 311
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._base_id = target.client_id or f"outcall-{uuid.uuid4().hex[:12]}"

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def start(self) -> MqttLink:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-link")
        return self

    async def wait_connected(self, within_s: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def _new_client(self) -> aiomqtt.Client:
        t = self.target
        client = aiomqtt.Client(
            t.host,
            t.port,
            username=t.username,
            password=t.password,
            identifier=self._base_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if self.v5 else True,
            keepalive=self.keepalive,
            max_inflight_messages=self.max_inflight,
            tls_context=ssl.create_default_context() if t.tls else None,
            timeout=10.0,
        )
        client.pending_calls_threshold = self.max_inflight * 4  # aiomqtt warns above this many
        return client

    async def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._closing:
            client = self._new_client()
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                async with client:
                    self._client, self._lost = client, lost
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self.connects += 1
                    delay = self.backoff_s[0]
                    self._up.set()
                    log.info(
                        "MQTT connected to %s:%d (v%s)",
                        self.target.host,
                        self.target.port,
                        5 if self.v5 else 3,
                    )
                    async for msg in client.messages:
                        await self._dispatch(str(msg.topic), msg.payload)
            except MqttConnectError as e:
                if self.v5 and self.target.protocol is None and e.rc in (1, 132):
                    log.info("broker refused MQTT v5; using 3.1.1 (no user properties)")
                    self.v5 = False
                    continue
                log.warning("MQTT connect to %s:%d refused: %s", self.target.host, self.target.port, e)
            except aiomqtt.MqttError as e:
                if not self._closing:
                    log.warning("MQTT connection to %s:%d lost: %s", self.target.host, self.target.port, e)
            finally:
                self._up.clear()
                self._client = None
                if not lost.done():
                    lost.set_result(None)
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(self.backoff_s[1], delay * 2)

    async def _dispatch(self, topic: str, payload: Any) -> None:
        if self.on_message is None:
            return
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        try:
            res = self.on_message(topic, data)
            if res is not None:
                await res
        except Exception:  # a bad handler must not drop the connection
            log.exception("MQTT message handler failed on %s", topic)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        user_properties: Sequence[tuple[str, str]] = (),
        ack_within_s: float = 10.0,
    ) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1: PUBACK). Raises DeliveryError when
        not connected within ``ack_within_s``, when the connection drops first, or on a refusal."""
        if not self._up.is_set() and not await self.wait_connected(ack_within_s):
            raise DeliveryError(f"MQTT broker {self.target.host}:{self.target.port} unreachable")
        client, lost = self._client, self._lost
        if client is None or lost is None or lost.done():
            raise DeliveryError("MQTT connection lost before publish")
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = "application/json"
            if user_properties:
                props.UserProperty = list(user_properties)
        pub = asyncio.ensure_future(
            client.publish(topic, payload, qos=qos, retain=False, properties=props, timeout=math.inf)
        )
        done, _ = await asyncio.wait({pub, lost}, timeout=ack_within_s, return_when=asyncio.FIRST_COMPLETED)
        if pub in done:
            try:
                pub.result()
            except aiomqtt.MqttError as e:
                raise DeliveryError(f"MQTT publish to {topic} failed: {e}") from e
            return
        pub.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await pub
        if lost.done():
            raise DeliveryError(f"MQTT connection lost before PUBACK on {topic}")
        raise DeliveryError(f"MQTT: no PUBACK on {topic} within {ack_within_s:g} s")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class MqttSink:
    """Outbox sink: every outcome, QoS 1, not retained, to ``<prefix>/<campaign or adhoc>/outcomes``."""

    #: publishes in flight (paho and aiomqtt scan their in-flight tables per message: keep it moderate)
    concurrency = 200

    def __init__(self, link: MqttLink, *, name: str = "mqtt", publish_timeout_s: float = 10.0) -> None:
        self.link = link
        self._name = name
        self.publish_timeout_s = publish_timeout_s

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, outcome: CallOutcome) -> bool:
        return True

    async def deliver(self, outcome: object) -> None:
        data = outcome.model_dump(mode="json") if isinstance(outcome, CallOutcome) else outcome
        if not isinstance(data, dict) or not data.get("outcome_id"):
            raise DeliveryError("MQTT sink: payload has no outcome_id", permanent=True)
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        await self.link.publish(
            outcome_topic(data.get("campaign"), self.link.target.prefix),
            body,
            user_properties=[("outcome_id", str(data["outcome_id"]))],
            ack_within_s=self.publish_timeout_s,
        )

    async def close(self) -> None:
        await self.link.close()


def control_subscriber(
    target: MqttTarget, handler: ControlHandler, *, campaign: str | None = None
) -> tuple[list[str], MessageHandler]:
    """The subscription and message handler that parse control messages into pydantic events and hand
    them to ``handler`` (bad messages are logged and dropped). Pass both to an `MqttLink`."""
    prefix = target.prefix

    async def on_message(topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) < 3 or parts[-1] != "control":
            return
        name = "/".join(parts[len(prefix.split("/")) : -1])
        try:
            ev = parse_control(name, payload)
        except ControlParseError as e:
            log.warning("%s", e)
            return
        res = handler(ev)
        if res is not None:
            await res

    return [control_topic(campaign, prefix)], on_message
