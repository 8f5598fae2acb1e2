"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 22): answer 401/407 challenges.

A 401 carries WWW-Authenticate and is answered with Authorization; a 407 carries Proxy-Authenticate and is
answered with Proxy-Authorization. MD5, MD5-sess, SHA-256 and SHA-256-sess; qop=auth (auth-int too);
nc/cnonce; opaque is echoed back.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from gateway.sip.message import SipParseError

_HASHES = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-512-256": lambda data=b"": hashlib.new("sha512_256", data),
}


class DigestError(ValueError):
    """A challenge cannot be answered (unknown scheme or algorithm, missing realm/nonce)."""


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @property
    def response_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def _parse_auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] not in "= \t,":
            i += 1
        key = text[start:i].strip().lower()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            if key:
                raise SipParseError(f"auth parameter {key!r} has no value")
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise SipParseError(f"auth parameter {key!r}: unterminated quoted string")
            i += 1
            value = "".join(buf)
        else:
            start = i
            while i < n and text[i] != ",":
                i += 1
            value = text[start:i].strip()
        params[key] = value
    return params


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate header value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authentication scheme {scheme!r} is not Digest")
    p = _parse_auth_params(rest)
    if "realm" not in p or "nonce" not in p:
        raise DigestError(f"Digest challenge without realm or nonce: {value[:80]!r}")
    algorithm = p.get("algorithm", "MD5")
    base = algorithm.upper().removesuffix("-SESS")
    if base not in _HASHES:
        raise DigestError(f"digest algorithm {algorithm!r} not supported (MD5, SHA-256, SHA-512-256)")
    qop = tuple(q.strip().lower() for q in p["qop"].split(",") if q.strip()) if "qop" in p else ()
    return Challenge(
        realm=p["realm"],
        nonce=p["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def _h(algorithm: str, data: str | bytes) -> str:
    fn = _HASHES[algorithm.upper().removesuffix("-SESS")]
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return fn(raw).hexdigest()  # type: ignore[no-untyped-call]


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The `response=` value (RFC 2617 3.2.2.1, RFC 7616 3.4.1)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        if cnonce is None:
            raise DigestError(f"{algorithm} needs a cnonce")
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + _h(algorithm, body)
    ha2 = _h(algorithm, a2)
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization header value answering `challenge`."""
    qop: str | None = None
    if challenge.qop:
        if "auth" in challenge.qop:
            qop = "auth"
        elif "auth-int" in challenge.qop:
            qop = "auth-int"
        else:
            raise DigestError(f"unsupported qop {challenge.qop}")
    if (qop or challenge.algorithm.upper().endswith("-SESS")) and cnonce is None:
        cnonce = os.urandom(8).hex()
    nc_s = f"{nc:08x}"
    resp = digest_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_s,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    if qop:
        parts += [f"qop={qop}", f"nc={nc_s}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


def challenges_of(headers_www: list[str], headers_proxy: list[str]) -> list[Challenge]:
    """Every Digest challenge we can answer from a 401/407 (others are skipped)."""
    out: list[Challenge] = []
    for value, proxy in [(v, False) for v in headers_www] + [(v, True) for v in headers_proxy]:
        try:
            out.append(parse_challenge(value, proxy=proxy))
        except (DigestError, SipParseError):
            continue
    return out
