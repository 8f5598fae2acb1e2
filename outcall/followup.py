"""Follow-up wiring: the SMS / WeCom outbox sinks from Settings, and the WeCom callback handler the API
route uses (verify + decrypt, link an add-contact event to its call, queue the advisor's welcome)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engine.errors import ConfigError
from gateway.delivery import Sink
from gateway.followup import FollowUpLedger, FollowUpSink, LedgerStore, SmsSender, WecomSender
from gateway.sms_aliyun import AliyunSmsClient, AliyunSmsConfig
from gateway.wecom import WecomClient
from gateway.wecom_contacts import LinkedContact, WecomContacts
from gateway.wecom_crypto import CallbackCrypto, WecomCryptoError, WecomEvent
from outcall.settings import Settings

log = logging.getLogger("outcall.followup")


def _check_templates(settings: Settings) -> None:
    for rule in settings.follow_up_rules:
        if rule.sms and rule.sms not in settings.sms_templates:
            raise ConfigError(
                f"follow_up_rules: sms template {rule.sms!r} is not in OUTCALL_SMS_TEMPLATES",
                hint="add it to [sms_templates] or fix the rule",
            )
        if rule.wecom and rule.wecom not in settings.wecom_templates:
            raise ConfigError(
                f"follow_up_rules: wecom template {rule.wecom!r} is not in OUTCALL_WECOM_TEMPLATES",
                hint="add it to [wecom_templates] or fix the rule",
            )
    if settings.wecom_link_url is None:
        users = [
            f"OUTCALL_SMS_TEMPLATES[{n!r}]"
            for n, t in settings.sms_templates.items()
            if "$wecom_link" in t.params.values()
        ]
        users += [
            f"OUTCALL_WECOM_TEMPLATES[{n!r}]"
            for n, w in settings.wecom_templates.items()
            if "{$wecom_link}" in w.text
        ]
        if users:
            raise ConfigError(
                f"{', '.join(users)} use $wecom_link but OUTCALL_WECOM_LINK_URL is not set",
                hint="set it to the customer-acquisition link's url, or give the template a text without it",
            )
    for name, t in settings.wecom_templates.items():
        if t.robot not in settings.wecom_robot_keys:
            raise ConfigError(
                f"OUTCALL_WECOM_TEMPLATES[{name!r}]: robot {t.robot!r} is not in OUTCALL_WECOM_ROBOT_KEYS",
                hint="set OUTCALL_WECOM_ROBOT_KEYS='{\"" + t.robot + '": "<webhook key>"}\'',
            )


def wecom_client(settings: Settings) -> WecomClient:
    return WecomClient(
        settings.wecom_corp_id or "",
        settings.wecom_secret.get_secret_value() if settings.wecom_secret else "",
        base_url=settings.wecom_api_base,
    )


def build_followup_sinks(settings: Settings, store: LedgerStore) -> list[Sink]:
    """`followup:sms` when OUTCALL_SMS_ACCESS_KEY_ID is set, `followup:wecom` when WeCom templates are."""
    _check_templates(settings)
    sinks: list[Sink] = []
    ledger: FollowUpLedger | None = None
    if settings.sms_access_key_id:
        if settings.sms_access_key_secret is None or not settings.sms_sign_name:
            raise ConfigError(
                "SMS follow-up needs OUTCALL_SMS_ACCESS_KEY_SECRET and OUTCALL_SMS_SIGN_NAME",
                hint="export them (the secret from the environment, never the repo)",
            )
        cfg = AliyunSmsConfig(
            access_key_id=settings.sms_access_key_id,
            access_key_secret=settings.sms_access_key_secret,
            sign_name=settings.sms_sign_name,
            endpoint=settings.sms_endpoint,
            region=settings.sms_region,
            rate_per_s=settings.sms_rate_per_s,
            burst=max(1, int(settings.sms_rate_per_s)),
        )
        ledger = FollowUpLedger(store)
        sender = SmsSender(
            AliyunSmsClient(cfg), settings.sms_templates, wecom_link_url=settings.wecom_link_url
        )
        sinks.append(
            FollowUpSink(
                sender,
                ledger,
                rules=settings.follow_up_rules,
                daily_cap=settings.sms_daily_cap,
                cap_tz=settings.follow_up_tz,
            )
        )
    if settings.wecom_templates:
        ledger = ledger or FollowUpLedger(store)
        robots = {k: v.get_secret_value() for k, v in settings.wecom_robot_keys.items()}
        wsender = WecomSender(
            wecom_client(settings), settings.wecom_templates, robots, link_url=settings.wecom_link_url
        )
        sinks.append(
            FollowUpSink(
                wsender,
                ledger,
                rules=settings.follow_up_rules,
                daily_cap=settings.wecom_daily_cap,
                cap_tz=settings.follow_up_tz,
            )
        )
    return sinks


class WecomCallback:
    """What the callback route does. Built once per app from Settings (None when not configured)."""

    def __init__(self, settings: Settings, store: LedgerStore, client: WecomClient | None = None) -> None:
        if not (settings.wecom_callback_token and settings.wecom_callback_aes_key and settings.wecom_corp_id):
            raise ConfigError(
                "the WeCom callback needs OUTCALL_WECOM_CALLBACK_TOKEN, OUTCALL_WECOM_CALLBACK_AES_KEY and "
                "OUTCALL_WECOM_CORP_ID",
                hint="copy Token and EncodingAESKey from the app's 接收事件服务器 page",
            )
        try:
            self.crypto = CallbackCrypto(
                settings.wecom_callback_token.get_secret_value(),
                settings.wecom_callback_aes_key.get_secret_value(),
                settings.wecom_corp_id,
            )
        except WecomCryptoError as e:
            raise ConfigError(str(e), hint="OUTCALL_WECOM_CALLBACK_AES_KEY is the 43-character key") from e
        self.contacts = WecomContacts(store)
        self.templates = settings.wecom_templates
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, ev: WecomEvent) -> LinkedContact | None:
        """Link an add-contact event to its call; queue the template's welcome for the advisor."""
        linked = await asyncio.to_thread(self.contacts.link_sync, ev, now=time.time())
        if linked is None:
            return None
        if linked.outcome_id is None:
            log.info(
                "wecom contact %s added by %s: state %r is no call of ours",
                ev.external_user_id,
                ev.user_id,
                ev.state,
            )
            return linked
        log.info("wecom contact added by %s from call %s", linked.user_id, linked.call_id)
        welcome = self._welcome(linked)
        if welcome and self.client is not None:
            task = asyncio.get_running_loop().create_task(self._send_welcome(linked, welcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return linked

    def _welcome(self, linked: LinkedContact) -> str | None:
        asked = linked.variables.get("follow_up")
        names: list[str] = []
        if isinstance(asked, list):
            names = [
                str(e.get("template")) for e in asked if isinstance(e, dict) and e.get("channel") == "wecom"
            ]
        for n in names:
            t = self.templates.get(n)
            if t is not None and t.welcome:
                return t.welcome
        return None

    async def _send_welcome(self, linked: LinkedContact, text: str) -> None:
        assert self.client is not None
        try:
            await self.client.add_msg_template(linked.user_id, [linked.external_userid], text)
        except Exception as e:  # the contact is linked either way; the advisor can still greet by hand
            log.warning("wecom add_msg_template for call %s failed: %s", linked.call_id, e)

    async def drain(self) -> None:
        """Wait for queued welcomes (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks))


def callback_for(app_state: Any, settings: Settings, store: LedgerStore) -> WecomCallback | None:
    """The app's WecomCallback, built on first use; None when the callback is not configured."""
    cb: WecomCallback | None = getattr(app_state, "wecom_callback", None)
    if cb is None and settings.wecom_callback_token is not None:
        client = wecom_client(settings) if settings.wecom_secret is not None else None
        cb = WecomCallback(settings, store, client)
        app_state.wecom_callback = cb
    return cb
