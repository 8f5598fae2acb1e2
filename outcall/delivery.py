"""Outcome delivery wiring: sinks from Settings (OUTCALL_MQTT_URL, OUTCALL_WEBHOOKS), attached to a store
so every saved outcome is enqueued in its transaction, and a deliverer draining the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from engine.errors import ConfigError
from gateway.control import Converted, Pause, Resume, apply_to_store
from gateway.delivery import OutboxDeliverer, Sink
from gateway.followup import LedgerStore
from gateway.mqtt import MqttLink, MqttSink, control_subscriber, parse_mqtt_url
from gateway.store.campaigns import CampaignStore
from gateway.store.outbox import OutboxStore, RetryPolicy
from gateway.webhook import WebhookSink
from outcall.followup import build_followup_sinks
from outcall.settings import Settings

log = logging.getLogger("outcall.delivery")


def build_sinks(
    settings: Settings,
    *,
    control_store: CampaignStore | None = None,
    control_campaign: str | None = None,
    publish_timeout_s: float = 10.0,
    followup_store: LedgerStore | None = None,
) -> list[Sink]:
    """The configured sinks (call inside a running loop: the MQTT link connects in the background).
    With ``control_store``, the MQTT link also subscribes to ``outcall/<campaign>/control`` and applies
    pause/resume/converted to that store. With ``followup_store``, the SMS / WeCom follow-up sinks
    (OUTCALL_SMS_* / OUTCALL_WECOM_*) are added; their ledger lives in that store."""
    sinks: list[Sink] = []
    if settings.mqtt_url:
        target = parse_mqtt_url(settings.mqtt_url)
        subs: list[str] = []
        on_message = None
        if control_store is not None:
            store = control_store

            async def handle(ev: Pause | Resume | Converted) -> None:
                await apply_to_store(store, ev)

            subs, on_message = control_subscriber(target, handle, campaign=control_campaign)
        link = MqttLink(target, subscriptions=subs, on_message=on_message).start()
        sinks.append(MqttSink(link, publish_timeout_s=publish_timeout_s))
    for cfg in settings.webhooks:
        sinks.append(WebhookSink(cfg))
    if followup_store is not None:
        sinks.extend(build_followup_sinks(settings, followup_store))
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"two outcome sinks share a name: {names}", hint="give each webhook a distinct name"
        )
    return sinks


class Delivery:
    """Sinks attached to a store plus a deliverer; `flush()` after a save, `run()` in the background."""

    def __init__(self, store: OutboxStore, sinks: list[Sink], settings: Settings) -> None:
        self.store = store
        self.sinks = sinks
        store.outbox_sinks = list(sinks)
        self.deliverer = OutboxDeliverer(
            store, sinks, policy=RetryPolicy(max_attempts=settings.outbox_max_attempts)
        )
        self._task: asyncio.Task[None] | None = None

    async def flush(self, *, within_s: float = 5.0) -> None:
        """Deliver what is due now; never raises (the outbox keeps what could not be sent)."""
        if not self.sinks:
            return
        try:
            res = await asyncio.wait_for(self.deliverer.drain(), within_s)
        except Exception as e:  # includes TimeoutError: rows stay pending and go next time
            log.warning("outcome delivery deferred (%s); `outcall outbox retry` or the next run sends it", e)
            return
        if res.failed:
            log.warning(
                "%d outcome deliveries failed; kept in the outbox (`outcall outbox list`)", res.failed
            )

    def start(self) -> Delivery:
        if self.sinks and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.deliverer.run())
        return self

    def notify(self) -> None:
        self.deliverer.notify()

    async def close(self) -> None:
        task, self._task = self._task, None
        self.deliverer.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deliverer.close()


async def open_delivery(settings: Settings, store: Any, **kwargs: Any) -> Delivery:
    kwargs.setdefault("followup_store", store)
    return Delivery(store, build_sinks(settings, **kwargs), settings)
