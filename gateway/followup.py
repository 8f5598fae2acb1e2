"""Follow-up after a call: SMS and WeCom, one outbox sink per channel.

What an outcome gets on a channel: the templates its dialplan asked for (``variables["follow_up"]``, a
list of ``{"channel", "template"}``) followed by those of every matching rule in settings
(``FollowUpRule``: campaigns / dialplans / grades / tags -> sms / wecom template). The first one is sent:
one message per outcome and channel.

The sink's ``accepts`` (checked when the outcome is saved, inside its transaction) only looks at the
outcome. The store checks run when the row is delivered, so a contact converted or put on the DNC list
after the call gets nothing: such a row is settled as delivered without sending. A per-number daily cap
(default 1 per channel per day, in ``cap_tz``) is kept in the ``followups`` ledger table, which also
records what was sent: a redelivered outbox row (a deliverer died after sending) finds its ``sent`` row
and does not send again. A permanent rejection frees the row's place in the cap.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from engine.campaign.contacts import normalise_cn
from engine.outcome import CallOutcome, Grade
from gateway.delivery import DeliveryError
from gateway.sms_aliyun import AliyunSmsClient, SmsTemplate
from gateway.store.outbox import load_outcome
from gateway.wecom import WecomClient, acquisition_url

log = logging.getLogger("outcall.followup")

Channel = Literal["sms", "wecom"]
T = TypeVar("T")

LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS followups ("
    " outcome_id TEXT NOT NULL, channel TEXT NOT NULL, phone TEXT NOT NULL, day TEXT NOT NULL,"
    " call_id TEXT NOT NULL, template TEXT NOT NULL, state TEXT NOT NULL, ref TEXT,"
    " at DOUBLE PRECISION NOT NULL, PRIMARY KEY (outcome_id, channel))",
    "CREATE INDEX IF NOT EXISTS followups_phone ON followups(phone, channel, day)",
)


class FollowUpRule(BaseModel):
    """E.g. grade A/B of campaign spring -> SMS ``trial_address`` + WeCom ``advisor``. Unset filters match
    everything; all set filters must match (``tags``: any of them)."""

    model_config = ConfigDict(extra="forbid")

    campaigns: list[str] | None = None
    dialplans: list[str] | None = None
    grades: list[Grade] | None = None
    tags: list[str] | None = None
    sms: str | None = Field(None, description="SMS template name (a key of OUTCALL_SMS_TEMPLATES)")
    wecom: str | None = Field(None, description="WeCom template name (a key of OUTCALL_WECOM_TEMPLATES)")

    def matches(self, o: CallOutcome) -> bool:
        if self.campaigns is not None and (o.campaign or "adhoc") not in self.campaigns:
            return False
        if self.dialplans is not None and o.dialplan not in self.dialplans:
            return False
        if self.grades is not None and o.grade not in self.grades:
            return False
        return self.tags is None or any(t in o.tags for t in self.tags)


def requested_templates(o: CallOutcome, channel: str, rules: Sequence[FollowUpRule] = ()) -> list[str]:
    """Template names for ``channel``: the dialplan's requests first, then matching rules; no repeats."""
    out: list[str] = []
    asked = o.variables.get("follow_up")
    if isinstance(asked, list):
        for entry in asked:
            if isinstance(entry, dict) and entry.get("channel") == channel and entry.get("template"):
                out.append(str(entry["template"]))
    for r in rules:
        name = getattr(r, channel, None)
        if name and r.matches(o):
            out.append(name)
    return list(dict.fromkeys(out))


def phone_keys(phone: str) -> tuple[str, str]:
    """The number as dialed and as the store keeps contacts (E.164)."""
    return phone, normalise_cn(phone) or phone


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...


class LedgerStore(Protocol):
    """What the ledger needs of a store (SqliteStore / PostgresStore both are)."""

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Any]: ...

    def _q(self, sql: str) -> str: ...


Verdict = Literal["send", "sent", "capped"]


class FollowUpLedger:
    """The ``followups`` table (blocking; run in a thread) and the converted / DNC checks."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        #: Postgres (several nodes): serialise per number with an advisory lock (SQLite's BEGIN IMMEDIATE
        #: already serialises writers)
        self.shared = bool(getattr(store, "skip_locked", ""))
        with store._tx() as cur:
            if self.shared:
                cur.execute("SELECT pg_advisory_xact_lock(770001)")  # nodes racing to create tables
            for sql in LEDGER_SCHEMA:
                cur.execute(sql)

    def blocked_sync(self, phone: str, campaign: str | None) -> str | None:
        """'dnc' or 'converted' when this number must get no follow-up, else None."""
        raw, e164 = phone_keys(phone)
        q = self.store._q
        with self.store._tx(write=False) as cur:
            cur.execute(
                q("SELECT 1 FROM dnc WHERE phone IN (?, ?) AND campaign IN ('', ?)"),
                (raw, e164, campaign or ""),
            )
            if cur.fetchone() is not None:
                return "dnc"
            cur.execute(q("SELECT 1 FROM contacts WHERE phone IN (?, ?) AND state='converted'"), (raw, e164))
            if cur.fetchone() is not None:
                return "converted"
        return None

    def reserve_sync(
        self, o: CallOutcome, channel: str, template: str, *, day: str, cap: int, now: float
    ) -> Verdict:
        """Claim a place in today's cap for this outcome (idempotent): 'send', 'sent' (already done) or
        'capped'."""
        phone = phone_keys(o.to)[1]
        q = self.store._q
        with self.store._tx() as cur:
            if self.shared:
                cur.execute(q("SELECT pg_advisory_xact_lock(hashtext(?))"), (f"followup:{channel}:{phone}",))
            cur.execute(
                q("SELECT state FROM followups WHERE outcome_id=? AND channel=?"), (o.outcome_id, channel)
            )
            row = cur.fetchone()
            if row is not None:
                return "sent" if row[0] == "sent" else "send"
            cur.execute(
                q("SELECT count(*) FROM followups WHERE phone=? AND channel=? AND day=?"),
                (phone, channel, day),
            )
            if int(cur.fetchone()[0]) >= cap:
                return "capped"
            cur.execute(
                q(
                    "INSERT INTO followups(outcome_id, channel, phone, day, call_id, template, state, at) "
                    "VALUES (?,?,?,?,?,?,'reserved',?)"
                ),
                (o.outcome_id, channel, phone, day, o.call_id, template, now),
            )
        return "send"

    def mark_sent_sync(self, outcome_id: str, channel: str, ref: str, now: float) -> None:
        with self.store._tx() as cur:
            cur.execute(
                self.store._q(
                    "UPDATE followups SET state='sent', ref=?, at=? WHERE outcome_id=? AND channel=?"
                ),
                (ref, now, outcome_id, channel),
            )

    def release_sync(self, outcome_id: str, channel: str) -> None:
        with self.store._tx() as cur:
            cur.execute(
                self.store._q("DELETE FROM followups WHERE outcome_id=? AND channel=? AND state='reserved'"),
                (outcome_id, channel),
            )

    def sent_sync(self, channel: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT outcome_id, channel, phone, day, call_id, template, state, ref FROM followups"
        params: tuple[Any, ...] = ()
        if channel is not None:
            sql += " WHERE channel=?"
            params = (channel,)
        with self.store._tx(write=False) as cur:
            cur.execute(self.store._q(sql + " ORDER BY at"), params)
            rows = cur.fetchall()
        keys = ("outcome_id", "channel", "phone", "day", "call_id", "template", "state", "ref")
        return [dict(zip(keys, r, strict=True)) for r in rows]


class Sender(Protocol):
    """Sends one follow-up; returns the provider's reference (BizId, msgid). Raises DeliveryError."""

    channel: Channel

    def knows(self, template: str) -> bool: ...

    async def send(self, o: CallOutcome, template: str) -> str: ...

    async def close(self) -> None: ...


class FollowUpSink:
    """The outbox sink of one channel (name ``followup:sms`` / ``followup:wecom``)."""

    def __init__(
        self,
        sender: Sender,
        ledger: FollowUpLedger,
        *,
        rules: Sequence[FollowUpRule] = (),
        daily_cap: int = 1,
        cap_tz: str = "Asia/Shanghai",
        now: Callable[[], datetime] | None = None,
        inline: bool = False,
    ) -> None:
        self.sender = sender
        self.ledger = ledger
        self.rules = list(rules)
        self.daily_cap = daily_cap
        self.tz = ZoneInfo(cap_tz)
        self._now = now or (lambda: datetime.now(self.tz))
        self.inline = inline
        self.skipped: dict[str, int] = {}

    #: sends in flight (the deliverer reads it); the providers' rate limits are lower anyway
    concurrency = 4

    @property
    def name(self) -> str:
        return f"followup:{self.sender.channel}"

    def accepts(self, outcome: CallOutcome) -> bool:
        return bool(requested_templates(outcome, self.sender.channel, self.rules))

    async def _db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        if self.inline:
            return fn(*args, **kw)
        return await asyncio.to_thread(fn, *args, **kw)

    def _skip(self, why: str, o: CallOutcome) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        log.info("%s: no follow-up for call %s (%s)", self.name, o.call_id, why)

    async def deliver(self, outcome: object) -> None:
        o = outcome if isinstance(outcome, CallOutcome) else _outcome(outcome)
        channel = self.sender.channel
        templates = requested_templates(o, channel, self.rules)
        if not templates:
            return
        template = templates[0]
        if not self.sender.knows(template):
            raise DeliveryError(
                f"{self.name}: template {template!r} (call {o.call_id}) is not configured; add it to "
                f"OUTCALL_{channel.upper()}_TEMPLATES",
                permanent=True,
            )
        blocked = await self._db(self.ledger.blocked_sync, o.to, o.campaign)
        if blocked:
            self._skip(blocked, o)
            return
        now = self._now().astimezone(self.tz)
        verdict = await self._db(
            self.ledger.reserve_sync,
            o,
            channel,
            template,
            day=now.date().isoformat(),
            cap=self.daily_cap,
            now=now.timestamp(),
        )
        if verdict == "sent":
            self._skip("already sent", o)
            return
        if verdict == "capped":
            self._skip(f"daily cap of {self.daily_cap} reached", o)
            return
        try:
            ref = await self.sender.send(o, template)
        except DeliveryError as e:
            if e.permanent:
                await self._db(self.ledger.release_sync, o.outcome_id, channel)
            raise
        await self._db(self.ledger.mark_sent_sync, o.outcome_id, channel, ref, self._now().timestamp())

    async def close(self) -> None:
        await self.sender.close()


def _outcome(payload: object) -> CallOutcome:
    import json

    if not isinstance(payload, dict):
        raise DeliveryError("follow-up: payload is not an outcome", permanent=True)
    return load_outcome(json.dumps(payload))


# ---- values for templates


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def outcome_values(o: CallOutcome, *, wecom_link: str | None = None) -> dict[str, str]:
    """What templates may use: the outcome's scalar variables, plus ``$call_id``-style fields."""
    vals = {
        k: str(v)
        for k, v in o.variables.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool)
    }
    vals.update(
        {
            "$call_id": o.call_id,
            "$outcome_id": o.outcome_id,
            "$campaign": o.campaign or "adhoc",
            "$grade": o.grade,
            "$phone_masked": mask_phone(o.to),
        }
    )
    if wecom_link is not None:
        vals["$wecom_link"] = wecom_link
    return vals


def mask_phone(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 7 else "****"


def resolve_params(spec: Mapping[str, str], values: Mapping[str, str], *, where: str) -> dict[str, str]:
    """Template params from their sources (see SmsTemplate); a missing source is a permanent error."""
    out: dict[str, str] = {}
    for name, source in spec.items():
        if len(source) >= 2 and source[0] == source[-1] and source[0] in "\"'":
            out[name] = source[1:-1]
        elif source in values:
            out[name] = values[source]
        else:
            raise DeliveryError(
                f"{where}: param {name!r} takes {source!r}, which this call did not capture; fix the "
                "template's params or the dialplan's capture",
                permanent=True,
            )
    return out


class SmsSender:
    """SMS via Aliyun SendSms; ``OutId`` = the outcome id."""

    channel: Channel = "sms"

    def __init__(
        self,
        client: AliyunSmsClient,
        templates: Mapping[str, SmsTemplate],
        *,
        wecom_link_url: str | None = None,
    ) -> None:
        self.client = client
        self.templates = dict(templates)
        self.wecom_link_url = wecom_link_url

    def knows(self, template: str) -> bool:
        return template in self.templates

    async def send(self, o: CallOutcome, template: str) -> str:
        t = self.templates[template]
        link = acquisition_url(self.wecom_link_url, o.call_id) if self.wecom_link_url else None
        params = resolve_params(
            t.params, outcome_values(o, wecom_link=link), where=f"OUTCALL_SMS_TEMPLATES[{template!r}]"
        )
        return await self.client.send(
            o.to, t.template_code, params, out_id=o.outcome_id, sign_name=t.sign_name
        )

    async def close(self) -> None:
        await self.client.close()


class WecomTemplate(BaseModel):
    """A WeCom follow-up: a group-robot message to the advisors (markdown with ``{placeholders}``:
    outcome variables and ``{$phone_masked}``, ``{$grade}``, ``{$call_id}``, ``{$wecom_link}``...), and
    optionally a welcome text sent by the advisor when the callee adds them (add_msg_template)."""

    model_config = ConfigDict(extra="forbid")

    robot: str = Field(description="a key of OUTCALL_WECOM_ROBOT_KEYS")
    text: str = "**意向客户** {$phone_masked} 等级 {$grade}\n> 通话 {$call_id}\n[加微链接]({$wecom_link})"
    welcome: str | None = Field(None, description="sent to the customer once they add the advisor")


def render(text: str, values: Mapping[str, str], *, where: str) -> str:
    """``{name}`` placeholders (names may start with $); ``{{``/``}}`` are literal braces."""
    out: list[str] = []
    for literal, field, _spec, _conv in string.Formatter().parse(text):
        out.append(literal)
        if field is None:
            continue
        if field not in values:
            raise DeliveryError(f"{where}: {{{field}}} is not known for this call", permanent=True)
        out.append(values[field])
    return "".join(out)


class WecomSender:
    """Tells the advisors' group robot about the lead, with the acquisition link carrying the call id."""

    channel: Channel = "wecom"

    def __init__(
        self,
        client: WecomClient,
        templates: Mapping[str, WecomTemplate],
        robot_keys: Mapping[str, str],
        *,
        link_url: str | None,
    ) -> None:
        self.client = client
        self.templates = dict(templates)
        self.robot_keys = dict(robot_keys)
        self.link_url = link_url

    def knows(self, template: str) -> bool:
        return template in self.templates

    async def send(self, o: CallOutcome, template: str) -> str:
        t = self.templates[template]
        where = f"OUTCALL_WECOM_TEMPLATES[{template!r}]"
        key = self.robot_keys.get(t.robot)
        if key is None:
            raise DeliveryError(
                f"{where}: robot {t.robot!r} is not in OUTCALL_WECOM_ROBOT_KEYS", permanent=True
            )
        link = acquisition_url(self.link_url, o.call_id) if self.link_url else None
        await self.client.robot_send(key, render(t.text, outcome_values(o, wecom_link=link), where=where))
        return f"robot:{t.robot}"

    async def close(self) -> None:
        await self.client.close()
