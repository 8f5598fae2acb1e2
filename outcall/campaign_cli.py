"""`outcall campaign ...`: create, import, start/pause/resume/stop, status, export, run; `outcall dnc ...`."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.campaign.scheduler import (
    CampaignAlert,
    CampaignConfig,
    CampaignLoop,
    CampaignStatus,
    Dialer,
    LoopStats,
)
from engine.clock import Clock, RealClock
from engine.errors import ConfigError, OutcallError
from gateway.store.campaigns import CampaignStore

log = logging.getLogger("outcall.campaign")

EXPORT_FIELDS = (
    "id",
    "phone",
    "name",
    "timezone",
    "consent",
    "priority",
    "variant",
    "state",
    "attempts",
    "last_disposition",
    "last_call_id",
    "next_at",
    "variables",
)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _store() -> CampaignStore:
    from gateway.store import open_store
    from outcall.settings import load_settings

    return open_store(load_settings().db, node=socket.gethostname())


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in items:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise OutcallError(f"{what} {p!r} is not key=value", hint=f"e.g. {what} phone=手机号")
        out[k] = v
    return out


def cmd_create(args: argparse.Namespace) -> int:
    import dialplans

    variants = {k: float(v) for k, v in _pairs(args.variant, "--variant").items()}
    for name in [args.dialplan, *variants]:
        dialplans.get(name)  # unknown dialplan: fail now, naming it
    cfg = CampaignConfig(
        name=args.name,
        dialplan=args.dialplan,
        timezone=args.timezone,
        trunk=args.trunk,
        ai_capacity=args.ai_capacity,
        max_concurrency=args.max_concurrency,
        calls_per_second=args.cps,
        pacing=args.pacing,
        consent_required=args.consent_required,
        variants=variants,
    )
    store = _store()
    store.create_campaign_sync(cfg, now=datetime.now(UTC).timestamp())
    _out(f"campaign {args.name} created (dialplan {args.dialplan}); import contacts, then start it")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from outcall.contacts_import import import_contacts

    store = _store()
    tty = sys.stderr.isatty()

    def progress(n: int) -> None:
        if tty:
            sys.stderr.write(f"\rimported rows: {n:,}")
            sys.stderr.flush()

    rep = import_contacts(store, args.name, args.file, mapping=_pairs(args.map, "--map"), progress=progress)
    if tty:
        sys.stderr.write("\n")
    if args.json:
        _out(json.dumps(rep.as_dict(), ensure_ascii=False))
    else:
        _out(f"imported {rep.imported}, duplicates {rep.duplicates}, invalid {rep.invalid_count}")
        for bad in rep.invalid[:20]:
            _out(f"  row {bad['row']}: {bad['reason']}")
        if rep.invalid_count > 20:
            _out(f"  … {rep.invalid_count - 20} more (use --json for all)")
    return 0


_TRANSITIONS: dict[str, tuple[set[CampaignStatus], CampaignStatus]] = {
    "start": ({CampaignStatus.DRAFT, CampaignStatus.PAUSED}, CampaignStatus.RUNNING),
    "resume": ({CampaignStatus.PAUSED}, CampaignStatus.RUNNING),
    "pause": ({CampaignStatus.RUNNING}, CampaignStatus.PAUSED),
    "stop": ({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}, CampaignStatus.STOPPED),
}


def transition(store: CampaignStore, name: str, verb: str) -> CampaignStatus:
    allowed, to = _TRANSITIONS[verb]
    _cfg, status = store.get_campaign_sync(name)
    if status not in allowed:
        raise ConfigError(
            f"cannot {verb} campaign {name!r}: it is {status.value}",
            hint=f"{verb} works from: {', '.join(sorted(s.value for s in allowed))}",
        )
    store.set_status_sync(name, to)
    return to


def cmd_transition(args: argparse.Namespace) -> int:
    to = transition(_store(), args.name, args.verb)
    _out(f"campaign {args.name}: {to.value}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stats = _store().campaign_stats_sync(args.name)
    _out(json.dumps(stats, ensure_ascii=False, indent=None if args.json else 2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _store()
    store.get_campaign_sync(args.name)
    out = Path(args.out or f"{args.name}.{args.format}")
    n = export_contacts(store, args.name, out, args.format)
    _out(f"exported {n} contacts to {out}")
    return 0


def _export_row(r: dict[str, Any]) -> list[Any]:
    return [
        json.dumps(r[k], ensure_ascii=False) if k == "variables" else ("" if r[k] is None else r[k])
        for k in EXPORT_FIELDS
    ]


def export_contacts(store: CampaignStore, name: str, out: Path, fmt: str) -> int:
    n = 0
    if fmt == "csv":
        with out.open("w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel opens 中文 correctly
            w = csv.writer(f)
            w.writerow(EXPORT_FIELDS)
            for r in store.iter_contacts_sync(name):
                w.writerow(_export_row(r))
                n += 1
        return n
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(name[:31])
    ws.append(list(EXPORT_FIELDS))
    for r in store.iter_contacts_sync(name):
        ws.append(_export_row(r))
        n += 1
    wb.save(out)
    return n


def cmd_dnc(args: argparse.Namespace) -> int:
    from outcall.contacts_import import normalise_phone

    phone, why = normalise_phone(args.phone)
    if phone is None:
        raise ConfigError(why)
    store = _store()
    if args.dcmd == "add":
        store.add_dnc_sync(phone, args.campaign or "", args.reason, now=datetime.now(UTC).timestamp())
        _out(f"{phone} added to the {'DNC of ' + args.campaign if args.campaign else 'global DNC'}")
    else:
        found = store.remove_dnc_sync(phone, args.campaign or "")
        _out(f"{phone} {'removed' if found else 'was not on that list'}")
    return 0


async def run_campaign(
    store: CampaignStore,
    name: str,
    dialer: Dialer,
    *,
    clock: Clock | None = None,
    until_idle: bool = False,
    tick_s: float = 0.2,
    max_idle_s: float = 60.0,
    follow_s: float | None = None,
) -> LoopStats:
    """Run the scheduler for a campaign over the store until stopped (or idle). Leases are renewed while
    calls run; the campaign's stored status is followed (pause/resume/stop from another process)."""
    clk = clock or RealClock()
    cfg, status = store.get_campaign_sync(name)
    if status is not CampaignStatus.RUNNING:
        raise ConfigError(f"campaign {name!r} is {status.value}", hint=f"outcall campaign start {name}")
    pausing = {"circuit_breaker", "budget_reached", "calendar_expired"}
    background: set[asyncio.Task[None]] = set()

    def on_event(a: CampaignAlert) -> None:
        log.warning("ALERT %s", a.model_dump_json())
        if a.kind in pausing:  # the stored status follows at once, so a watcher does not resume it
            t = asyncio.get_running_loop().create_task(
                asyncio.to_thread(store.set_status_sync, name, CampaignStatus.PAUSED)
            )
            background.add(t)
            t.add_done_callback(background.discard)

    loop = CampaignLoop(
        cfg,
        store,
        dialer,
        clock=clk,
        tick_s=tick_s,
        max_idle_s=max_idle_s,
        on_event=on_event,
        spent=store.spent_sync(name),
    )

    async def follow() -> None:
        while loop.status is not CampaignStatus.STOPPED:
            await clk.sleep(follow_s if follow_s is not None else max(1.0, store.lease_s / 3))
            await store.renew(clk.now())
            st = await store.campaign_status(name)
            if st is CampaignStatus.STOPPED:
                loop.stop()
            elif st is CampaignStatus.PAUSED and loop.status is CampaignStatus.RUNNING:
                loop.pause()
            elif st is CampaignStatus.RUNNING and loop.status is CampaignStatus.PAUSED:
                fresh, _ = await asyncio.to_thread(store.get_campaign_sync, name)
                loop.config = loop.config.model_copy(update={"budget": fresh.budget})  # a raised cap
                loop.resume()

    watcher = asyncio.get_running_loop().create_task(follow())
    try:
        stats = await loop.run(until_idle=until_idle)
    finally:
        watcher.cancel()
    if background:
        await asyncio.gather(*background, return_exceptions=True)
    if loop.status is CampaignStatus.PAUSED and loop.alerts:
        store.set_status_sync(name, CampaignStatus.PAUSED)
    return stats


async def _run_live(name: str, until_idle: bool) -> LoopStats:
    """Dial through the real gateway and models: one run_call per claimed contact."""
    import dialplans
    from gateway.trunks import TrunkRouter
    from outcall.runtime import Speech, build_speech, campaign_dial, start_ua
    from outcall.settings import load_settings

    settings = load_settings()
    store = _store()
    cfg, _st = store.get_campaign_sync(name)
    plans = {p: dialplans.get(p) for p in [cfg.dialplan, *cfg.variants]}
    from outcall.delivery import open_delivery

    # outcomes are enqueued with the attempt's transaction; MQTT control (pause/resume/converted) applies
    # to the stored campaign, which the loop follows
    delivery = (await open_delivery(settings, store, control_store=store, control_campaign=name)).start()
    speech = build_speech(settings)
    ua = await start_ua(settings)
    router = TrunkRouter(ua, settings.all_trunks())
    try:

        async def line() -> tuple[Speech, TrunkRouter]:
            return speech, router

        from outcall.callerids import CallerIds

        caller_ids = CallerIds(settings.all_trunks(), settings.caller_ids, store)
        dial = campaign_dial(cfg, plans, line, settings=settings, caller_ids=caller_ids)

        # run_call cannot report the answer moment, so every call in flight holds an AI seat
        if cfg.pacing != "strict":
            cfg = cfg.model_copy(update={"pacing": "strict"})
            store.update_campaign_sync(cfg)
        return await run_campaign(store, name, dial, until_idle=until_idle)
    finally:
        await ua.close()
        speech.close()
        await delivery.flush()
        await delivery.close()


def cmd_run(args: argparse.Namespace) -> int:
    stats = asyncio.run(_run_live(args.name, args.until_idle))
    _out(json.dumps(stats.__dict__, ensure_ascii=False))
    return 0


def add_parsers(sub: Any) -> None:
    """Add `campaign` and `dnc` to the top-level subparsers."""
    cp = sub.add_parser("campaign", help="call lists and campaigns")
    cs = cp.add_subparsers(dest="ccmd", required=True)

    c = cs.add_parser("create", help="create a campaign (draft)")
    c.add_argument("name")
    c.add_argument("--dialplan", required=True)
    c.add_argument("--timezone", default="Asia/Shanghai", help="used when a contact's zone is unknown")
    c.add_argument("--trunk", default=None)
    c.add_argument("--ai-capacity", type=int, default=10, help="concurrent conversations")
    c.add_argument("--max-concurrency", type=int, default=20, help="calls in flight")
    c.add_argument("--cps", type=float, default=5.0, help="calls per second")
    c.add_argument("--pacing", choices=["predictive", "strict"], default="predictive")
    c.add_argument("--consent-required", action="store_true")
    c.add_argument("--variant", action="append", default=[], metavar="DIALPLAN=RATIO", help="A/B split")
    c.set_defaults(fn=cmd_create)

    i = cs.add_parser("import", help="import a CSV/XLSX call list")
    i.add_argument("name")
    i.add_argument("file")
    i.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="phone/name/timezone/consent column names when not guessed",
    )
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_import)

    for verb in ("start", "pause", "resume", "stop"):
        t = cs.add_parser(verb, help=f"{verb} a campaign")
        t.add_argument("name")
        t.set_defaults(fn=cmd_transition, verb=verb)

    s = cs.add_parser("status", help="contacts by state, dispositions, connect rate, variants")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)

    e = cs.add_parser("export", help="export contacts with their results")
    e.add_argument("name")
    e.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    e.add_argument("--out", default=None, help="file to write (default NAME.FORMAT)")
    e.set_defaults(fn=cmd_export)

    r = cs.add_parser("run", help="dial due contacts through the gateway (scheduler)")
    r.add_argument("name")
    r.add_argument("--until-idle", action="store_true", help="return when nothing is due or in flight")
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("dnc", help="do-not-call list")
    ds = d.add_subparsers(dest="dcmd", required=True)
    for verb in ("add", "remove"):
        x = ds.add_parser(verb)
        x.add_argument("phone")
        x.add_argument("--campaign", default=None, help="per-campaign list (default: global)")
        x.add_argument("--reason", default="")
        x.set_defaults(fn=cmd_dnc)
