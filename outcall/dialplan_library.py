"""Dialplans the API serves: the shipped ones (package `dialplans`) plus designer-edited ones in a
writable folder (OUTCALL_DIALPLANS_DIR), which shadow a shipped plan of the same name."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import dialplans
from engine.dialog.loader import Problem, parse
from engine.dialog.schema import Dialplan
from engine.errors import DialplanError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DialplanLibrary:
    def __init__(self, custom_dir: str | Path) -> None:
        self.custom_dir = Path(custom_dir)

    def _custom(self, name: str) -> Path:
        return self.custom_dir / f"{name}.yaml"

    def names(self) -> list[tuple[str, str]]:
        """(name, source) with source 'custom' or 'shipped', sorted by name."""
        out = {n: "shipped" for n in dialplans.names()}
        if self.custom_dir.is_dir():
            out.update({p.stem: "custom" for p in self.custom_dir.glob("*.yaml")})
        return sorted(out.items())

    def resolve(self, name: str) -> Path:
        if not NAME.match(name):
            raise DialplanError(f"bad dialplan name {name!r}", hint="letters, digits, '-', '_', '.'")
        custom = self._custom(name)
        if custom.is_file():
            return custom
        shipped = dialplans.DIR / f"{name}.yaml"
        if shipped.is_file():
            return shipped
        raise DialplanError(
            f"no dialplan named {name!r}", hint=f"have: {', '.join(n for n, _ in self.names())}"
        )

    def source(self, name: str) -> str:
        return "custom" if self.resolve(name).parent == self.custom_dir else "shipped"

    def get(self, name: str) -> Dialplan:
        return dialplans.get(str(self.resolve(name)))

    def text(self, name: str) -> str:
        return self.resolve(name).read_text(encoding="utf-8")

    def check(self, name: str, text: str) -> tuple[Dialplan | None, list[Problem]]:
        """Validate as if saved (problems name `<name>.yaml:line:col`)."""
        base = self.custom_dir if self.custom_dir.is_dir() else dialplans.DIR
        plan, problems = parse(text, f"{name}.yaml", base_dir=base)
        if plan is not None and plan.name != name:
            problems = [
                Problem(
                    f"{name}.yaml",
                    1,
                    1,
                    f"name {plan.name!r} differs from the URL name {name!r}",
                    f"set `name: {name}`",
                ),
                *problems,
            ]
        return plan, problems

    def save(self, name: str, text: str) -> Path:
        """Write atomically (a reader never sees half a file); the version it replaces is kept under
        `.history/<name>/` (calls that started on it keep running it; outcomes name the version)."""
        self.custom_dir.mkdir(parents=True, exist_ok=True)
        target = self._custom(name)
        if target.is_file():
            hist = self.custom_dir / ".history" / name
            hist.mkdir(parents=True, exist_ok=True)
            if target.read_text(encoding="utf-8") == text:
                return target  # unchanged: nothing to keep, nothing to write
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            shutil.copy2(target, hist / f"{stamp}-{time.time_ns() % 10**9:09d}.yaml")
        fd, tmp = tempfile.mkstemp(dir=self.custom_dir, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
        return target


_VERSION = re.compile(r"^(version:\s*)(['\"]?)([^'\"\n#]*?)\2(\s*(?:#.*)?)$", re.M)


def bump_version(text: str, version: str) -> tuple[str, str]:
    """The text with its `version:` moved past `version` ("2" -> "3", "1.4" -> "1.5", "v2-b" -> "v2-b.1")."""
    parts = version.rsplit(".", 1)
    if version.isdigit():
        new = str(int(version) + 1)
    elif len(parts) == 2 and parts[1].isdigit():
        new = f"{parts[0]}.{int(parts[1]) + 1}"
    else:
        new = f"{version}.1"
    out, n = _VERSION.subn(lambda m: f'{m.group(1)}"{new}"{m.group(4)}', text, count=1)
    if n == 0:
        out = f'version: "{new}"\n' + text
    return out, new
