"""Control events a CRM sends back (over MQTT `outcall/<campaign>/control`): pause or resume a campaign,
or report a contact converted (stop calling and following it up).

Payloads are JSON: ``{"action": "pause"}``, ``{"action": "resume"}``,
``{"action": "converted", "phone": "13800138000"}``. `apply_to_store` turns them into store changes; a
running campaign follows its stored status (see outcall.campaign_cli.run_campaign).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from engine.campaign.scheduler import CampaignStatus
from engine.errors import ConfigError
from gateway.store.campaigns import CampaignStore

log = logging.getLogger("outcall.control")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    campaign: str = ""  # filled from the topic


class Pause(_Event):
    action: Literal["pause"]


class Resume(_Event):
    action: Literal["resume"]


class Converted(_Event):
    action: Literal["converted"]
    phone: str = Field(min_length=3, max_length=32)


ControlEvent = Annotated[Pause | Resume | Converted, Field(discriminator="action")]
_ADAPTER: TypeAdapter[Pause | Resume | Converted] = TypeAdapter(ControlEvent)


class ControlParseError(ValueError):
    pass


def parse_control(campaign: str, payload: bytes | str) -> Pause | Resume | Converted:
    """Parse one control message; raises ControlParseError naming what is wrong."""
    try:
        ev = _ADAPTER.validate_json(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "payload"
        raise ControlParseError(
            f"control message for campaign {campaign!r}: {where}: {first['msg']} "
            '(expected {"action": "pause"|"resume"|"converted", "phone": ...})'
        ) from e
    return ev.model_copy(update={"campaign": campaign})


def apply_to_store_sync(store: CampaignStore, ev: Pause | Resume | Converted) -> str:
    """Apply one event; returns what happened (for the log). Unknown campaigns raise ConfigError."""
    _cfg, status = store.get_campaign_sync(ev.campaign)
    if isinstance(ev, Pause):
        if status is CampaignStatus.RUNNING:
            store.set_status_sync(ev.campaign, CampaignStatus.PAUSED)
            return "paused"
        return f"not paused: campaign is {status.value}"
    if isinstance(ev, Resume):
        if status is CampaignStatus.PAUSED:
            store.set_status_sync(ev.campaign, CampaignStatus.RUNNING)
            return "resumed"
        return f"not resumed: campaign is {status.value}"
    n = store.stop_contact_sync(ev.campaign, ev.phone, "converted")
    return f"contact {ev.phone} converted ({n} pending attempt(s) stopped)"


async def apply_to_store(store: CampaignStore, ev: Pause | Resume | Converted) -> str:
    try:
        what = await asyncio.to_thread(apply_to_store_sync, store, ev)
    except ConfigError as e:
        log.warning("control %s ignored: %s", ev.action, e)
        return f"ignored: {e}"
    log.info("control %s for campaign %s: %s", ev.action, ev.campaign, what)
    return what
