"""`outcall ...` command line. Usage/config errors print `error: ... (hint: ...)` and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from engine.errors import OutcallError

EXIT_USAGE = 2


def _vars(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise OutcallError(f"--var {p!r} is not key=value", hint="e.g. --var name=张三")
        out[key] = value
    return out


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_schema(args: argparse.Namespace) -> int:
    from engine.outcome import outcome_json_schema

    if args.what == "outcome":
        _out(json.dumps(outcome_json_schema(), ensure_ascii=False, indent=2))
    elif args.what == "dialplan":
        from engine.dialog.schema import Dialplan

        _out(json.dumps(Dialplan.model_json_schema(), ensure_ascii=False, indent=2))
    return 0


def cmd_dialplan_validate(args: argparse.Namespace) -> int:
    import dialplans
    from engine.dialog.loader import parse

    bad = 0
    for name in args.paths:
        try:
            path = dialplans.resolve(name)
            text = path.read_text(encoding="utf-8")
        except (OutcallError, OSError, UnicodeDecodeError) as e:
            _out(f"{name}:1:1: {e}")
            bad += 1
            continue
        _plan, problems = parse(text, str(path), base_dir=path.parent)
        for p in problems:
            _out(str(p))
        errors = [p for p in problems if p.is_error]
        bad += bool(errors)
        if not errors:
            _out(f"{path}: ok" + (f" ({len(problems)} warning(s))" if problems else ""))
    return 1 if bad else 0


def cmd_dialplan_chat(args: argparse.Namespace) -> int:
    import dialplans
    from outcall.dialplan_tools import chat

    plan = dialplans.get(args.name)
    from outcall.dialplan_tools import load_classifier

    clf = load_classifier(args.classifier)
    return chat(plan.with_variant(args.variant), variables=_vars(args.var), classifier=clf)


def cmd_dialplan_test(args: argparse.Namespace) -> int:
    from outcall.dialplan_tools import find_tests, format_results, load_classifier, run_test_file

    clf = load_classifier(args.classifier) if args.classifier else None  # None: each file's own classifier
    results = [run_test_file(p, clf, pin=args.pin) for p in find_tests(args.target)]
    _out(format_results(results))
    return 0 if all(r.ok for r in results) else 1


def cmd_dialplan_graph(args: argparse.Namespace) -> int:
    import dialplans
    from outcall.dialplan_tools import graph, svg

    plan = dialplans.get(args.name)
    if args.format == "svg":
        sys.stdout.buffer.write(svg(graph(plan, "dot")))
        sys.stdout.flush()
    else:
        _out(graph(plan, args.format))
    return 0


def cmd_dialplan_prerender(args: argparse.Namespace) -> int:
    import dialplans
    from outcall.dialplan_tools import build_synthesizer, prerender
    from outcall.settings import load_settings

    plan = dialplans.get(args.name)
    synth = build_synthesizer(load_settings())
    try:
        n = asyncio.run(prerender(plan, synth))
    finally:
        close = getattr(getattr(synth, "synth", None), "close", None)
        if close is not None:
            close()
    _out(
        f"{plan.name}: {n} prompts rendered into {synth.cache_dir} ({synth.misses} synthesised, "
        f"{synth.hits + synth.disk_hits} already cached)"
    )
    return 0


def cmd_dialplan_inbox(args: argparse.Namespace) -> int:
    import csv

    from gateway.store.sqlite import SqliteStore
    from outcall.dialplan_tools import inbox_rows
    from outcall.settings import load_settings

    store = SqliteStore(args.db or load_settings().db)
    try:
        outcomes = asyncio.run(store.list_outcomes(limit=args.limit))
    finally:
        store.close()
    rows = inbox_rows(outcomes, args.name)
    if args.format == "jsonl":
        for r in rows:
            _out(json.dumps(r, ensure_ascii=False))
    elif args.format == "examples":  # paste-ready under `intents: NAME: examples:`
        for text in sorted({str(r["text"]) for r in rows if r["text"]}):
            _out(f"- {json.dumps(text, ensure_ascii=False)}")
    else:
        w = csv.DictWriter(
            sys.stdout,
            fieldnames=["dialplan_version", "node", "text", "intent", "confidence", "call_id", "at"],
        )
        w.writeheader()
        w.writerows(rows)
    return 0


def cmd_dialplan_schema(args: argparse.Namespace) -> int:
    from engine.dialog.schema import Dialplan

    _out(json.dumps(Dialplan.model_json_schema(), ensure_ascii=False, indent=2))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    variables = _vars(args.var)
    from outcall.runtime import place_one_call
    from outcall.settings import load_settings

    settings = load_settings()
    outcome = asyncio.run(
        place_one_call(
            settings,
            args.target,
            dialplan=args.dialplan,
            trunk=args.trunk,
            variables=variables,
            ring_timeout=args.ring_timeout,
            record=args.record,
        )
    )
    if args.json:
        _out(outcome.model_dump_json())
    else:
        from outcall.report import format_outcome

        _out(format_outcome(outcome))
    return 0


def cmd_recordings_purge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.recording import purge
    from outcall.settings import load_settings

    settings = load_settings()
    days = args.days if args.days is not None else settings.recording_retention_days
    n = purge(Path(settings.recordings_dir), days)
    _out(f"deleted {n} recording(s) older than {days:g} days from {settings.recordings_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from outcall.demo import run_demo
    from outcall.settings import load_settings

    return asyncio.run(
        run_demo(load_settings(), as_json=args.json, language=args.language, use_baresip=not args.no_baresip)
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """API + campaign scheduler (+ gateway, started on the first call) in one process."""
    from outcall.serve import serve
    from outcall.settings import load_settings

    asyncio.run(serve(load_settings(), args.host, args.port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="outcall", description="AI voice outbound-call engine")
    ap.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: OUTCALL_LOG_LEVEL)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("call", help="place one call, run a dialplan, print the outcome")
    c.add_argument("target", help="sip: URI or a phone number (dialed through the trunk)")
    c.add_argument("--dialplan", required=True, help="shipped dialplan name or a YAML path")
    c.add_argument("--trunk", default=None)
    c.add_argument("--var", action="append", default=[], metavar="K=V")
    c.add_argument("--ring-timeout", type=float, default=45.0)
    c.add_argument("--record", action="store_true", help="record the call (stereo FLAC in recordings_dir)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_call)

    d = sub.add_parser("demo", help="run a small campaign against local scripted callees")
    d.add_argument("--json", action="store_true")
    d.add_argument("--language", choices=["zh", "en"], default="zh")
    d.add_argument("--no-baresip", action="store_true", help="serve every callee from our own UA")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("schema", help="print a JSON Schema")
    s.add_argument("what", choices=["outcome", "dialplan"])
    s.set_defaults(fn=cmd_schema)

    dp = sub.add_parser("dialplan", help="dialplan tools")
    dps = dp.add_subparsers(dest="dcmd", required=True)
    v = dps.add_parser("validate", help="check dialplans; prints path:line:col: message")
    v.add_argument("paths", nargs="+")
    v.set_defaults(fn=cmd_dialplan_validate)
    ch = dps.add_parser("chat", help="talk to a dialplan in the terminal (stdin lines; /silence /dtmf 1 ...)")
    ch.add_argument("name", help="shipped dialplan name or a YAML path")
    ch.add_argument("--var", action="append", default=[], metavar="K=V")
    ch.add_argument("--variant", default=None, help="an A/B variant to run")
    ch.add_argument(
        "--classifier", choices=["runtime", "rules"], default="runtime", help="runtime: the one calls use"
    )
    ch.set_defaults(fn=cmd_dialplan_chat)
    te = dps.add_parser("test", help="run conversation tests (dialplans/tests/*.yaml); exit 1 on failure")
    te.add_argument(
        "target", nargs="?", default=None, help="dialplan name, plan path or test file (default: all)"
    )
    te.add_argument("--pin", action="store_true", help="record this classifier's branches in <test>.pin.json")
    te.add_argument(
        "--classifier",
        choices=["runtime", "rules"],
        default=None,
        help="default: the one each test file names (classifier:); runtime: the one calls use",
    )
    te.set_defaults(fn=cmd_dialplan_test)
    gr = dps.add_parser("graph", help="print the dialplan as a graph")
    gr.add_argument("name")
    gr.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    gr.set_defaults(fn=cmd_dialplan_graph)
    pr = dps.add_parser("prerender", help="synthesise every static prompt into the TTS cache")
    pr.add_argument("name")
    pr.set_defaults(fn=cmd_dialplan_prerender)
    ib = dps.add_parser("inbox", help="export the replies no branch understood (from stored outcomes)")
    ib.add_argument("name", help="dialplan name")
    ib.add_argument("--db", default=None, help="outcome database (default: OUTCALL_DB)")
    ib.add_argument("--format", choices=["csv", "jsonl", "examples"], default="csv")
    ib.add_argument("--limit", type=int, default=10000, help="newest N outcomes to read")
    ib.set_defaults(fn=cmd_dialplan_inbox)
    sc = dps.add_parser("schema", help="print the dialplan JSON Schema")
    sc.set_defaults(fn=cmd_dialplan_schema)

    sv = sub.add_parser("serve", help="run the HTTP API and the campaign scheduler")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.set_defaults(fn=cmd_serve)

    # --- NLU model: `outcall models train|eval`, `outcall nlu classify` (outcall/models_cli.py) ---
    from outcall import models_cli

    models_cli.add_parsers(sub)
    # --- end NLU block ---

    # --- campaigns and DNC (issue 8): outcall/campaign_cli.py ---
    from outcall.campaign_cli import add_parsers as add_campaign_parsers

    add_campaign_parsers(sub)
    # --- end campaigns ---

    # --- API tokens (issue 8, HTTP API): `outcall token create|list|revoke` (outcall/token_cli.py) ---
    from outcall.token_cli import add_parsers as add_token_parsers

    add_token_parsers(sub)
    # --- end API tokens ---

    # --- outcome delivery (issue 9): `outcall outbox ...`, `outcall outcomes export` (outbox_cli.py) ---
    from outcall import outbox_cli

    outbox_cli.add_parsers(sub)
    # --- end outcome delivery ---

    rec = sub.add_parser("recordings", help="call recordings")
    recs = rec.add_subparsers(dest="rcmd", required=True)
    pg = recs.add_parser("purge", help="delete recordings older than the retention period")
    pg.add_argument("--days", type=float, default=None, help="default: OUTCALL_RECORDING_RETENTION_DAYS")
    pg.set_defaults(fn=cmd_recordings_purge)

    # --- reports (issue 9): `outcall report daily NAME` (outcall/daily_report.py) ---
    from outcall import daily_report

    daily_report.add_parsers(sub)
    # --- end reports ---
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from outcall import logging as olog

    args = build_parser().parse_args(argv)
    try:
        from outcall.settings import load_settings

        settings = load_settings()
        level = args.log_level or settings.log_level
        olog.setup(level if args.cmd != "schema" else "WARNING", mask_phones=settings.log_mask_phones)
        rc: Any = args.fn(args)
        return int(rc)
    except OutcallError as e:
        sys.stderr.write(f"error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
