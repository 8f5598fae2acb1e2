"""Trunk and caller-ID model, and the dial-string rules a trunk applies to a number."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from engine.errors import ConfigError

CallerIdMode = Literal["from", "pai", "rpid"]


class DialRules(BaseModel):
    """How a number is written into the Request-URI for this trunk."""

    model_config = ConfigDict(extra="forbid")

    strip_country_code: bool = Field(True, description="drop +86 / 0086 / 86 before mobiles")
    country_code: str = "86"
    mobile_prefix_zero: bool = Field(
        False, description="prefix 0 to mobiles outside the trunk's area (some trunks require it)"
    )
    local_area_code: str | None = Field(None, description="the trunk's own area code, e.g. 010")
    tech_prefix: str = Field("", description="digits some carriers want before every number")
    allow_sip_uri: bool = True

    def apply(self, number: str, *, mobile_area_code: str | None = None) -> str:
        """Normalise a dialable number for this trunk. Raises ConfigError for what cannot be dialed."""
        n = re.sub(r"[\s\-().]", "", number)
        if not n:
            raise ConfigError(f"empty number {number!r}", hint="give digits, e.g. 13812345678")
        if n.startswith("+"):
            n = "00" + n[1:]
        if not n.isdigit():
            raise ConfigError(
                f"number {number!r} has characters that are not digits",
                hint="use digits with an optional leading +",
            )
        cc = self.country_code
        if self.strip_country_code:
            for p in ("00" + cc, cc):
                rest = n[len(p) :]
                if n.startswith(p) and (_is_cn_mobile(rest) or (p.startswith("00") and rest)):
                    n = rest if _is_cn_mobile(rest) or rest.startswith("0") else "0" + rest
                    break
        if (
            self.mobile_prefix_zero
            and _is_cn_mobile(n)
            and mobile_area_code is not None
            and self.local_area_code is not None
            and mobile_area_code != self.local_area_code
        ):
            n = "0" + n
        if self.local_area_code and n.startswith(self.local_area_code) and not _is_cn_mobile(n):
            n = n[len(self.local_area_code) :]
        return self.tech_prefix + n


def _is_cn_mobile(n: str) -> bool:
    return len(n) == 11 and n.startswith("1") and n[1] in "3456789"


class Tariff(BaseModel):
    """How the carrier bills answered time: from answer, rounded up to whole increments (per minute is
    the norm on Chinese trunks; some bill 6-second steps), at a price per minute."""

    model_config = ConfigDict(extra="forbid")

    increment_s: int = Field(60, ge=1, description="billing step in seconds (60: per started minute)")
    price_per_min: float = Field(0.0, ge=0, description="price per billed minute, e.g. 0.08 (CNY)")
    currency: str = "CNY"

    def bill(self, talk_s: float) -> tuple[int, float]:
        """(billed seconds, cost) for one call's talk time."""
        if talk_s <= 0:
            return 0, 0.0
        steps = -(-math.ceil(talk_s - 1e-9) // self.increment_s)
        billed = steps * self.increment_s
        return billed, round(billed / 60 * self.price_per_min, 6)


class Trunk(BaseModel):
    """One SIP trunk (carrier, SBC or PBX) we dial through."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    proxy: str | None = Field(
        None, description="host[:port] of the outbound proxy/SBC; None dials the URI's host directly"
    )
    transport: Literal["udp", "tcp"] = "udp"
    domain: str | None = Field(None, description="SIP domain for Request-URI/From; default: proxy host")
    auth_user: str | None = Field(None, description="digest username (may differ from from_user)")
    password: SecretStr | None = None
    from_user: str | None = Field(None, description="user part of From when not the caller ID")
    caller_ids: list[str] = Field(default_factory=list, description="caller-ID pool for this trunk")
    caller_id_mode: CallerIdMode = "from"
    privacy: Literal["none", "id"] = "none"
    dial: DialRules = Field(default_factory=DialRules)
    max_channels: int = Field(100, ge=1)
    calls_per_second: float = Field(10.0, gt=0)
    failover: list[str] = Field(default_factory=list, description="trunk names tried on 503/timeout")
    registration: bool = Field(False, description="REGISTER is optional and never needed to dial")
    tariff: Tariff = Field(default_factory=lambda: Tariff())

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        v = v.removeprefix("sip:")
        _host, _, port = v.rpartition(":") if v.count(":") == 1 else (v, "", "")
        if port and not port.isdigit():
            raise ValueError(f"proxy {v!r}: port must be a number")
        return v

    def request_uri(self, target: str) -> str:
        """The Request-URI for a number or a SIP URI."""
        t = target.strip()
        if t.startswith(("sip:", "sips:")):
            if not self.dial.allow_sip_uri:
                raise ConfigError(f"trunk {self.name} dials numbers only, got {target!r}")
            return t
        host = self.domain or (self.proxy.split(":")[0] if self.proxy else None)
        if host is None:
            raise ConfigError(
                f"cannot dial number {target!r} on trunk {self.name!r}: it has no proxy or domain",
                hint="set OUTCALL_SIP_PROXY (or proxy= in the trunk's TOML) or dial a sip: URI",
            )
        user = self.dial.apply(t)
        return f"sip:{user}@{self.domain or self.proxy}"
