"""`outcall token create|list|revoke`: API bearer tokens with roles (stored as SHA-256 hashes)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.store.auth import ROLES, AuthStore


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _auth() -> AuthStore:
    from gateway.store import open_store
    from outcall.settings import load_settings

    return AuthStore(open_store(load_settings().db))


def cmd_create(args: argparse.Namespace) -> int:
    auth = _auth()
    tid, token = auth.create_token(args.role, args.name)
    auth.audit("cli", "admin", "token.create", tid, {"role": args.role, "name": args.name})
    if args.quiet:
        _out(token)
    else:
        _out(f"token {tid} ({args.role}); shown once, store it now:\n{token}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for t in _auth().list_tokens():
        state = "revoked" if t.revoked else f"last used {t.last_used_at or 'never'}"
        _out(f"{t.id}  {t.role:<8}  {t.name}  created {t.created_at}  {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    auth = _auth()
    if not auth.revoke_token(args.id):
        _out(f"no live token {args.id}")
        return 1
    auth.audit("cli", "admin", "token.revoke", args.id)
    _out(f"token {args.id} revoked")
    return 0


def add_parsers(sub: Any) -> None:
    tp = sub.add_parser("token", help="API bearer tokens (roles admin/manager/designer/viewer)")
    ts = tp.add_subparsers(dest="tcmd", required=True)
    c = ts.add_parser("create", help="create a token; prints it once (only its hash is stored)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", default=None, help="who or what uses it (shown in the audit log)")
    c.add_argument("--quiet", "-q", action="store_true", help="print only the token")
    c.set_defaults(fn=cmd_create)
    ls = ts.add_parser("list", help="tokens (never the secrets)")
    ls.set_defaults(fn=cmd_list)
    rv = ts.add_parser("revoke", help="revoke a token by id")
    rv.add_argument("id")
    rv.set_defaults(fn=cmd_revoke)
