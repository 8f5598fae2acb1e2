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
        _plan, problems = parse(text, str(path))
        for p in problems:
            _out(str(p))
        bad += bool(problems)
        if not problems:
            _out(f"{path}: ok")
    return 1 if bad else 0


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
        )
    )
    if args.json:
        _out(outcome.model_dump_json())
    else:
        from outcall.report import format_outcome

        _out(format_outcome(outcome))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from outcall.demo import run_demo
    from outcall.settings import load_settings

    return asyncio.run(
        run_demo(load_settings(), as_json=args.json, language=args.language, use_baresip=not args.no_baresip)
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.store.sqlite import SqliteStore
    from outcall.api.app import create_app
    from outcall.settings import load_settings

    settings = load_settings()
    app = create_app(settings, SqliteStore(settings.db))
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
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

    sv = sub.add_parser("serve", help="run the HTTP API")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.set_defaults(fn=cmd_serve)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from outcall import logging as olog

    args = build_parser().parse_args(argv)
    try:
        from outcall.settings import load_settings

        level = args.log_level or load_settings().log_level
        olog.setup(level if args.cmd != "schema" else "WARNING")
        rc: Any = args.fn(args)
        return int(rc)
    except OutcallError as e:
        sys.stderr.write(f"error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
