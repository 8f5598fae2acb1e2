"""Outcomes through the outbox to a real mosquitto: QoS 1, user properties, control messages, a broker
down at save time, and a broker restart mid-stream with nothing lost from a CRM subscriber's view."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from peers import Mosquitto, free_tcp_port

from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig, CampaignStatus
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.control import Converted, Pause, Resume, apply_to_store
from gateway.delivery import OutboxDeliverer
from gateway.mqtt import MqttLink, MqttSink, MqttTarget, control_subscriber
from gateway.store.outbox import RetryPolicy
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def outcome(i: int, campaign: str | None = "spring") -> CallOutcome:
    return CallOutcome(
        call_id=f"call-{i}",
        campaign=campaign,
        to=f"+86138{i:08d}",
        disposition=Disposition.ANSWERED,
        grade="B",
        started_at=T0,
        ended_at=T0,
    )


@pytest.fixture
def persistent_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions and queued QoS 1 messages across restart(), as a CRM's would."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (apt-get install --no-install-recommends mosquitto)")
    broker = Mosquitto(workdir=tmp_path, persistence=True)
    try:
        yield broker.start()
    finally:
        broker.stop()


class Crm:
    """A CRM-like subscriber: persistent session (v5, clean_start off), QoS 1, reconnects; records every
    outcome id received (duplicates included) and the user properties."""

    def __init__(self, host: str, port: int, topic: str = "outcall/+/outcomes") -> None:
        self.host, self.port, self.topic = host, port, topic
        self.ids: list[str] = []
        self.topics: Counter[str] = Counter()
        self.user_props: dict[str, str] = {}
        self.subscribed = asyncio.Event()
        self.connects = 0
        self._want: tuple[set[str], asyncio.Event] | None = None
        self._task: asyncio.Task[None] | None = None

    def wait_for(self, ids: set[str]) -> asyncio.Event:
        ev = asyncio.Event()
        self._want = (ids, ev)
        self._check()
        return ev

    def _check(self) -> None:
        if self._want and self._want[0] <= set(self.ids):
            self._want[1].set()

    def _record(self, msg: aiomqtt.Message) -> None:
        assert isinstance(msg.payload, bytes)
        data = json.loads(msg.payload)
        self.ids.append(data["outcome_id"])
        self.topics[str(msg.topic)] += 1
        for k, v in getattr(msg.properties, "UserProperty", []) or []:
            if k == "outcome_id":
                self.user_props[data["outcome_id"]] = v
        self._check()

    async def _run(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        while True:
            client = aiomqtt.Client(
                self.host,
                self.port,
                identifier="crm-1",
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=props,
            )
            try:
                async with client:
                    await client.subscribe(self.topic, qos=1)
                    self.connects += 1
                    self.subscribed.set()
                    async for msg in client.messages:
                        self._record(msg)
            except aiomqtt.MqttError:
                self.subscribed.clear()
                # paho acknowledged these on receipt; aiomqtt stops iterating at the disconnect, so a
                # real CRM must drain what was already received before reconnecting
                while not client._queue.empty():
                    self._record(client._queue.get_nowait())
                await asyncio.sleep(0.05)  # reconnect pace, not a test timing

    async def __aenter__(self) -> Crm:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def delivering(
    store: SqliteStore, port: int, policy: RetryPolicy | None = None
) -> AsyncIterator[tuple[OutboxDeliverer, MqttLink]]:
    link = MqttLink(MqttTarget("127.0.0.1", port), backoff_s=(0.05, 0.5)).start()
    sink = MqttSink(link, publish_timeout_s=5.0)
    store.outbox_sinks = [sink]
    policy = policy or RetryPolicy(base_s=0.05, max_s=0.5, max_attempts=1000)
    d = OutboxDeliverer(store, [sink], policy=policy)
    task = asyncio.get_running_loop().create_task(d.run(poll_s=0.05))
    try:
        yield d, link
    finally:
        d.stop()
        await task
        await d.close()


async def test_single_outcome_published_qos1_with_id_and_user_property(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "o.db")
    async with Crm(mosquitto.host, mosquitto.port) as crm, delivering(store, mosquitto.port) as (d, _link):
        adhoc = outcome(1, campaign=None)
        await store.save_outcome(adhoc)
        d.notify()
        await asyncio.wait_for(crm.wait_for({adhoc.outcome_id}).wait(), 10)
    assert crm.topics == {"outcall/adhoc/outcomes": 1}
    assert crm.user_props[adhoc.outcome_id] == adhoc.outcome_id
    assert store.outbox_counts_sync() == {"pending": 0, "delivered": 1, "dead": 0}
    rows = store.outbox_list_sync()
    assert rows[0].sink == "mqtt" and rows[0].attempts == 1


async def test_broker_down_keeps_the_row_then_delivers_when_it_is_up(tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (apt-get install --no-install-recommends mosquitto)")
    port = free_tcp_port()
    store = SqliteStore(tmp_path / "o.db")
    link = MqttLink(MqttTarget("127.0.0.1", port), backoff_s=(0.05, 0.2)).start()
    sink = MqttSink(link, publish_timeout_s=0.3)
    o = outcome(7)
    await store.save_outcome(o, sinks=[sink])  # the call's outcome is stored whatever the broker does
    d = OutboxDeliverer(store, [sink], policy=RetryPolicy(base_s=0.01, max_s=0.01, jitter=0.0))
    res = await d.drain_once()
    assert (res.claimed, res.delivered, res.failed) == (1, 0, 1)
    [row] = store.outbox_list_sync(state="pending")
    assert row.attempts == 1 and "unreachable" in (row.last_error or "")
    broker = Mosquitto(workdir=tmp_path)
    broker.port = port
    broker._spawn()  # the broker comes up on the port the link keeps trying
    try:
        async with Crm(broker.host, port) as crm:
            assert await link.wait_connected(10)
            ev = crm.wait_for({o.outcome_id})
            while not ev.is_set():  # the next run (or `outcall outbox retry`) delivers it
                await d.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), 0.05)
        assert store.outbox_counts_sync()["delivered"] == 1
    finally:
        await link.close()
        broker.stop()


async def test_broker_restart_mid_stream_loses_nothing(
    persistent_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    broker = persistent_mosquitto
    store = SqliteStore(tmp_path / "o.db")
    ids: list[str] = []
    async with Crm(broker.host, broker.port) as crm, delivering(store, broker.port) as (d, link):
        restart: asyncio.Future[None] | None = None
        i = 0
        after = 0
        while after < 150:  # keep producing until 150 outcomes were saved after the broker came back
            o = outcome(i, campaign="spring" if i % 2 else None)
            i += 1
            await store.save_outcome(o)
            ids.append(o.outcome_id)
            d.notify()
            if i == 200:
                restart = asyncio.ensure_future(asyncio.to_thread(broker.restart))
            if restart is not None and restart.done():
                after += 1
        assert restart is not None
        await restart
        try:
            await asyncio.wait_for(crm.wait_for(set(ids)).wait(), 30)
        except TimeoutError:
            missing = set(ids) - set(crm.ids)
            pytest.fail(
                f"CRM misses {sorted(ids.index(m) for m in missing)} of {len(ids)}; "
                f"outbox {store.outbox_counts_sync()}; connects link={link.connects} crm={crm.connects}; "
                f"restart at 200, saved {i}\n"
                + "\n".join(x for x in broker.log_text().splitlines() if "PUB" not in x)
            )
        dupes = len(crm.ids) - len(set(crm.ids))
        saved_during_restart = i - 200 - 150
    counts = store.outbox_counts_sync()
    logging.getLogger(__name__).info(
        "restart test: %d outcomes, %d received, %d duplicates", len(ids), len(crm.ids), dupes
    )
    assert counts == {"pending": 0, "delivered": len(ids), "dead": 0}
    assert set(crm.ids) == set(ids), "every outcome reached the CRM"
    assert link.connects >= 2 and crm.connects >= 2, "both sides really reconnected"
    assert saved_during_restart > 0, "outcomes were produced while the broker was away"
    # QoS 1 is at least once: a PUBACK lost in the restart makes us resend, and the broker may redeliver
    # an unacknowledged message to the CRM; the CRM dedupes by outcome_id. Duplicates are bounded by
    # what was in flight (our publishes in flight + mosquitto's 20 per client), never by the stream.
    assert dupes <= MqttSink.concurrency + 20, dupes
    assert crm.topics["outcall/adhoc/outcomes"] + crm.topics["outcall/spring/outcomes"] == len(crm.ids)


async def test_control_messages_pause_resume_and_convert(mosquitto: Mosquitto, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    store.create_campaign_sync(CampaignConfig(name="spring", dialplan="trial-class-zh"), now=T0.timestamp())
    store.set_status_sync("spring", CampaignStatus.RUNNING)
    callee = Contact(campaign="spring", phone="+8613800000001")
    store.add_contacts_sync("spring", [callee], now=T0.timestamp())
    seen: list[Pause | Resume | Converted] = []
    applied: asyncio.Queue[str] = asyncio.Queue()

    async def handle(ev: Pause | Resume | Converted) -> None:
        seen.append(ev)
        await applied.put(await apply_to_store(store, ev))

    target = MqttTarget("127.0.0.1", mosquitto.port)
    subs, on_message = control_subscriber(target, handle)
    link = MqttLink(target, subscriptions=subs, on_message=on_message).start()
    try:
        assert await link.wait_connected(10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as crm:
            await crm.publish("outcall/spring/control", b'{"action": "pause"}', qos=1)
            assert await asyncio.wait_for(applied.get(), 10) == "paused"
            assert store.get_campaign_sync("spring")[1] is CampaignStatus.PAUSED
            await crm.publish("outcall/spring/control", b'{"action": "explode"}', qos=1)  # dropped, logged
            await crm.publish("outcall/spring/control", b"not json", qos=1)
            await crm.publish("outcall/spring/control", b'{"action": "resume"}', qos=1)
            assert await asyncio.wait_for(applied.get(), 10) == "resumed"
            assert store.get_campaign_sync("spring")[1] is CampaignStatus.RUNNING
            body = b'{"action": "converted", "phone": "+8613800000001"}'
            await crm.publish("outcall/spring/control", body, qos=1)
            assert "1 pending attempt(s) stopped" in await asyncio.wait_for(applied.get(), 10)
            await crm.publish("outcall/nosuch/control", b'{"action": "pause"}', qos=1)
            assert (await asyncio.wait_for(applied.get(), 10)).startswith("ignored: no campaign")
    finally:
        await link.close()
    assert [type(e).__name__ for e in seen] == ["Pause", "Resume", "Converted", "Pause"]
    assert store.contact_states_sync("spring") == {"converted": 1}
