"""Phone-number masking: 13812345678 / +8613812345678 -> 138****5678, for viewers (API, exports) and in
logs (`OUTCALL_LOG_MASK_PHONES`, on by default)."""

from __future__ import annotations

import re
from typing import Any

PHONE_KEYS = frozenset({"phone", "to", "phone_number", "mobile"})
# a digit run (single - or space separators allowed) not glued to letters, dots or colons: not hex ids,
# IP addresses, ports or times
_DIGITS = re.compile(r"(?<![A-Za-z0-9_.])\+?\d(?:[- ]?\d){6,14}(?![A-Za-z0-9_.:])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def mask_phone(phone: str | None) -> str | None:
    if phone is None:
        return None
    digits = re.sub(r"\D", "", phone)
    if phone.startswith("+86") or (digits.startswith("86") and len(digits) == 13):
        digits = digits[2:]
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_text(text: str) -> str:
    """Numbers inside free text (transcripts, reasons)."""

    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        return s if _DATE.fullmatch(s) else mask_phone(s) or ""

    return _DIGITS.sub(sub, text)


def mask(value: Any) -> Any:
    """Recursively mask phone-like keys (and numbers inside transcript texts) in JSON-able data."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in PHONE_KEYS and isinstance(v, str):
                out[k] = mask_phone(v)
            elif k == "text" and isinstance(v, str):
                out[k] = mask_text(v)
            else:
                out[k] = mask(v)
        return out
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value
