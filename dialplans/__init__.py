"""Shipped dialplans (YAML) and their conversation tests."""

from __future__ import annotations

from pathlib import Path

from engine.dialog.loader import load
from engine.dialog.schema import Dialplan
from engine.errors import DialplanError

DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in DIR.glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A shipped dialplan by name, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    shipped = DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise DialplanError(
        f"no dialplan named {name_or_path!r}",
        hint=f"shipped dialplans: {', '.join(names())}; or give a path to a .yaml file",
    )


def get(name_or_path: str) -> Dialplan:
    return load(resolve(name_or_path))
