"""`outcall outbox list|retry|deliver` (the delivery outbox) and `outcall outcomes export`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _store() -> Any:
    from gateway.store import open_store
    from outcall.settings import load_settings

    return open_store(load_settings().db)


async def _deliver(store: Any) -> dict[str, int]:
    from outcall.delivery import open_delivery
    from outcall.settings import load_settings

    delivery = await open_delivery(load_settings(), store)
    try:
        if not delivery.sinks:
            return {}
        res = await delivery.deliverer.drain()
        return {"delivered": res.delivered, "failed": res.failed, "dead": res.dead}
    finally:
        await delivery.close()


def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    rows = store.outbox_list_sync(args.state, limit=args.limit, sink=args.sink)
    if args.json:
        _out(json.dumps([r.as_dict() for r in rows], ensure_ascii=False))
        return 0
    counts = store.outbox_counts_sync()
    _out("  ".join(f"{k}: {v}" for k, v in counts.items()))
    for r in rows:
        d = r.as_dict()
        when = f" next {d['next_at']}" if d["next_at"] else ""
        err = f"  {r.last_error}" if r.last_error else ""
        _out(f"{r.id:>8}  {r.state:<9} {r.sink:<20} {r.outcome_id}  attempts {r.attempts}{when}{err}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    if not args.ids and not args.dead:
        raise ConfigError(
            "outbox retry needs row ids or --dead", hint="outcall outbox retry 12 13, or --dead"
        )
    store = _store()
    n = store.outbox_retry_sync([int(i) for i in args.ids], dead=args.dead)
    _out(f"{n} row(s) due again")
    if not args.no_deliver:
        got = asyncio.run(_deliver(store))
        _out("no sinks configured (OUTCALL_MQTT_URL, OUTCALL_WEBHOOKS)" if not got else json.dumps(got))
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    got = asyncio.run(_deliver(_store()))
    _out("no sinks configured (OUTCALL_MQTT_URL, OUTCALL_WEBHOOKS)" if not got else json.dumps(got))
    return 0 if not got or not got["failed"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.export import export_outcomes

    store = _store()
    out = Path(args.out or f"outcomes{'-' + args.campaign if args.campaign else ''}.{args.format}")
    n = export_outcomes(
        store.iter_outcomes_sync(args.campaign), out, args.format, lang=args.lang, unmasked=args.unmasked
    )
    _out(f"exported {n} outcomes to {out}{'' if args.unmasked else ' (numbers masked)'}")
    return 0


def add_parsers(sub: Any) -> None:
    ob = sub.add_parser("outbox", help="outcome deliveries (MQTT, webhooks): list, retry, deliver")
    obs = ob.add_subparsers(dest="ocmd", required=True)
    ls = obs.add_parser("list", help="outbox rows, newest first, with counts per state")
    ls.add_argument("--state", choices=["pending", "delivered", "dead"], default=None)
    ls.add_argument("--sink", default=None, help="e.g. mqtt or webhook:crm")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)
    rt = obs.add_parser("retry", help="make rows due now (ids, or every dead row) and deliver them")
    rt.add_argument("ids", nargs="*", metavar="ID")
    rt.add_argument("--dead", action="store_true", help="every dead-letter row")
    rt.add_argument("--no-deliver", action="store_true", help="only mark them due")
    rt.set_defaults(fn=cmd_retry)
    dv = obs.add_parser("deliver", help="deliver every due row now with the configured sinks")
    dv.set_defaults(fn=cmd_deliver)

    oc = sub.add_parser("outcomes", help="stored call outcomes")
    ocs = oc.add_subparsers(dest="ocmd", required=True)
    ex = ocs.add_parser("export", help="CSV (UTF-8 BOM, for Excel) or XLSX; numbers masked by default")
    ex.add_argument("--campaign", default=None, help="one campaign (default: all outcomes)")
    ex.add_argument("--format", choices=["csv", "xlsx"], required=True)
    ex.add_argument("--lang", choices=["zh", "en"], default="zh", help="header language")
    ex.add_argument("--unmasked", action="store_true", help="full phone numbers (only if your role allows)")
    ex.add_argument("--out", default=None, help="file path (default outcomes[-CAMPAIGN].FORMAT)")
    ex.set_defaults(fn=cmd_export)
