"""Contacts as the engine sees them, plus pure phone-number rules.

The full parse/validate of numbers (phonenumbers, with carrier metadata) lives in the import adapter;
the engine only accepts E.164 strings (`+8613812345678`) and knows a few cheap rules about them: the
Chinese default normalisation used when no adapter is at hand, the time zone of a number's region, and
deduplication.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_JUNK = re.compile(r"[\s\-().\u3000]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

#: time zone by country calling code (the common ones; campaign time zone is the fallback)
REGION_TZ: dict[str, str] = {
    "86": "Asia/Shanghai",
    "852": "Asia/Hong_Kong",
    "853": "Asia/Macau",
    "886": "Asia/Taipei",
    "81": "Asia/Tokyo",
    "82": "Asia/Seoul",
    "65": "Asia/Singapore",
    "60": "Asia/Kuala_Lumpur",
    "66": "Asia/Bangkok",
    "84": "Asia/Ho_Chi_Minh",
    "62": "Asia/Jakarta",
    "63": "Asia/Manila",
    "91": "Asia/Kolkata",
    "44": "Europe/London",
    "49": "Europe/Berlin",
    "33": "Europe/Paris",
    "61": "Australia/Sydney",
}


class Contact(BaseModel):
    """One callee of one campaign."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    campaign: str
    phone: str = Field(description="E.164, e.g. +8613812345678")
    name: str | None = None
    timezone: str | None = None
    consent: bool | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, description="higher first; speed-to-lead contacts use 100")
    variant: str | None = None
    attempts: int = 0
    first_attempt_at: float | None = None  # epoch seconds


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def is_cn_mobile(national: str) -> bool:
    return len(national) == 11 and national[0] == "1" and national[1] in "3456789"


def normalise_cn(raw: str) -> str | None:
    """Cheap Chinese normalisation to E.164 (mobiles, +86/0086/86, spaces and dashes, landlines written
    with their 0-prefixed area code). None when the text is not a plausible number."""
    n = _JUNK.sub("", raw.strip())
    if n.startswith("+"):
        n = "00" + n[1:]
    if not n.isdigit():
        return None
    if n.startswith("0086"):
        n = n[4:]
    elif n.startswith("86") and len(n) in (13, 12) and is_cn_mobile(n[2:]):
        n = n[2:]
    elif n.startswith("00"):
        rest = n[2:]
        return "+" + rest if 8 <= len(rest) + 1 <= 16 else None
    if is_cn_mobile(n):
        return "+86" + n
    if n.startswith("0") and 10 <= len(n) <= 12:
        return "+86" + n[1:]  # landline: 0 + area code (2-3 digits) + 7-8 digit subscriber number
    return None


def region_timezone(e164: str) -> str | None:
    """The time zone of a number's country (longest calling-code match), or None."""
    digits = e164.lstrip("+")
    for k in (3, 2, 1):
        tz = REGION_TZ.get(digits[:k])
        if tz:
            return tz
    return None


def contact_timezone(contact: Contact, campaign_tz: str) -> str:
    """The contact's own column, else the number's region, else the campaign's."""
    return contact.timezone or region_timezone(contact.phone) or campaign_tz


def dedupe(numbers: Iterable[str], seen: set[str] | None = None) -> Iterator[tuple[str, bool]]:
    """Yield (number, is_duplicate) preserving order; `seen` may carry numbers already in the campaign."""
    s = seen if seen is not None else set()
    for n in numbers:
        dup = n in s
        s.add(n)
        yield n, dup


def assign_variant(key: str, ratios: Mapping[str, float]) -> str | None:
    """Deterministic A/B split: the same key always lands in the same variant, in proportion to ratios."""
    if not ratios:
        return None
    total = sum(max(0.0, r) for r in ratios.values())
    if total <= 0:
        return next(iter(ratios))
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    acc = 0.0
    for name, r in ratios.items():
        acc += max(0.0, r) / total
        if h < acc:
            return name
    return list(ratios)[-1]
