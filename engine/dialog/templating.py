"""`{{variable}}` templating for prompts. Unknown variables are a validation error, never a crash."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variables_in(text: str) -> list[str]:
    return _VAR.findall(text)


def render(text: str, variables: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        v = variables.get(m.group(1))
        return "" if v is None else str(v)

    return _VAR.sub(sub, text)


def is_static(text: str) -> bool:
    return not _VAR.search(text)
