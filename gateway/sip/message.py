"""SIP messages (RFC 3261 section 7, 20, 25): parse and serialise requests and responses.

Header names are case-insensitive and compact forms are expanded on parse. Headers are kept in wire order
as (canonical name, value) pairs; a multi-value header (`Via: a, b`) can be read value by value with
`Headers.values()`. Bad input raises `SipParseError` naming what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"


class SipParseError(ValueError):
    """A SIP message, header or URI could not be parsed. The message says which part and why."""


COMPACT: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: dict[str, str] = {
    n.lower(): n
    for n in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Remote-Party-ID",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        *COMPACT.values(),
    )
}

#: Headers whose value may hold several comma-separated entries (RFC 3261 7.3.1). Auth headers and
#: dates contain commas inside one value and are never split.
_MULTI = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "p-asserted-identity",
        "reason",
        "privacy",
    }
)

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d)(?: (.*))?$")


def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`, unknown names keep their spelling."""
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name.strip())


def split_commas(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and <...>."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class Headers:
    """Ordered, case-insensitive SIP headers."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first header line with this name."""
        key = canonical_name(name).lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def get_all(self, name: str) -> list[str]:
        """Every header line with this name (not split at commas)."""
        key = canonical_name(name).lower()
        return [v for n, v in self._items if n.lower() == key]

    def values(self, name: str) -> list[str]:
        """Every value with this name, multi-value headers split at top-level commas."""
        key = canonical_name(name).lower()
        lines = self.get_all(name)
        if key not in _MULTI:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(split_commas(line))
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every header of this name with one line (kept at the first one's place)."""
        cname = canonical_name(name)
        key = cname.lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == key:
                self._items[i] = (cname, value)
                self._items = [item for j, item in enumerate(self._items) if j <= i or item[0].lower() != key]
                return
        self._items.append((cname, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first value of a multi-value header (the top Via), keeping the others."""
        key = canonical_name(name).lower()
        for i, (n, v) in enumerate(self._items):
            if n.lower() == key:
                rest = split_commas(v)[1:]
                self._items[i] = (n, ", ".join([value, *rest]))
                return
        raise KeyError(name)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h


@dataclass
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # --- convenience accessors ---
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def top_via(self) -> Via:
        vias = self.headers.values("Via")
        if not vias:
            raise SipParseError("message has no Via header")
        return Via.parse(vias[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"


REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN.match(parts[1]):
        raise SipParseError(f"CSeq {value!r} is not '<number> <METHOD>'")
    return int(parts[0]), parts[1].upper()


_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    return data, b""


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one SIP message from a datagram (or a stream frame when `stream`)."""
    if not data.strip():
        raise SipParseError("empty message")
    head, body = _split_head(data.lstrip(b"\r\n"))
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SipParseError(f"header section is not UTF-8 (byte {e.start})") from None
    raw_lines = re.split(r"\r?\n", text)
    start = raw_lines[0].strip()
    # unfold continuation lines (RFC 3261 7.3.1)
    lines: list[str] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        elif line.strip():
            lines.append(line)
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or not _TOKEN.match(name):
            raise SipParseError(f"header line {line[:60]!r} is not 'Name: value'")
        headers.add(name, value.strip())

    msg: SipMessage
    if start.startswith(SIP_VERSION + " "):
        m = _STATUS_LINE.match(start)
        if not m:
            raise SipParseError(f"status line {start[:60]!r} is not 'SIP/2.0 <code> <reason>'")
        msg = SipResponse(headers=headers, status=int(m.group(1)), reason=m.group(2) or "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != SIP_VERSION or not _TOKEN.match(parts[0]):
            raise SipParseError(f"start line {start[:60]!r} is neither a request nor a status line")
        if ":" not in parts[1]:
            raise SipParseError(f"Request-URI {parts[1][:60]!r} has no scheme")
        msg = SipRequest(headers=headers, method=parts[0].upper(), uri=parts[1])

    for req in _REQUIRED:
        if headers.get(req) is None:
            raise SipParseError(f"mandatory header {req} is missing")
    _num, method = parse_cseq(headers["CSeq"])
    if isinstance(msg, SipRequest) and method != msg.method and not (msg.method == "ACK" and method == "ACK"):
        raise SipParseError(f"CSeq method {method} does not match request method {msg.method}")
    clen = headers.get("Content-Length")
    if clen is not None:
        if not clen.strip().isdigit():
            raise SipParseError(f"Content-Length {clen!r} is not a number")
        n = int(clen)
        if n > len(body):
            raise SipParseError(f"body is truncated: Content-Length {n} but {len(body)} bytes follow")
        body = body[:n]
    elif stream:
        raise SipParseError("Content-Length is mandatory on stream transports")
    msg.body = body
    return msg


def frame_stream(buffer: bytearray) -> bytes | None:
    """Take one whole message off the front of a TCP stream buffer, or None when more bytes are needed.

    Leading CRLFs (keep-alives) are dropped. Raises SipParseError on a header section without
    Content-Length.
    """
    while buffer[:2] == b"\r\n":
        del buffer[:2]
    idx = buffer.find(b"\r\n\r\n")
    if idx < 0:
        if len(buffer) > 65536:
            raise SipParseError("no end of headers within 64 KiB")
        return None
    head = bytes(buffer[:idx]).decode("utf-8", "replace")
    m = re.search(r"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.IGNORECASE | re.MULTILINE)
    if not m:
        raise SipParseError("Content-Length is mandatory on stream transports")
    total = idx + 4 + int(m.group(1))
    if len(buffer) < total:
        return None
    frame = bytes(buffer[:total])
    del buffer[:total]
    return frame


# --- parameters, Via, URI, name-addr --------------------------------------------------------------


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x"` -> {'a': '1', 'b': None, 'c': '"x"'} (names lower-cased)."""
    params: dict[str, str | None] = {}
    for part in _split_semis(text):
        if not part:
            continue
        k, eq, v = part.partition("=")
        params[k.strip().lower()] = v.strip() if eq else None
    return params


def _split_semis(text: str) -> list[str]:
    out: list[str] = []
    quoted = False
    cur: list[str] = []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"{what}: unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"{what}: junk after IPv6 host in {text!r}")
        port_s = rest[1:] if rest else ""
    else:
        host, _, port_s = text.partition(":")
    if not host or not re.match(r"^[A-Za-z0-9.\-_\[\]:]+$", host):
        raise SipParseError(f"{what}: bad host in {text!r}")
    if port_s:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise SipParseError(f"{what}: bad port {port_s!r}")
        return host, int(port_s)
    return host, None


@dataclass
class Via:
    host: str
    port: int | None = None
    transport: str = "UDP"
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(.*)$", value)
        if not m:
            raise SipParseError(f"Via {value[:60]!r} is not 'SIP/2.0/<transport> host[:port];params'")
        host, port = _split_hostport(m.group(2), "Via")
        return cls(host=host, port=port, transport=m.group(1).upper(), params=parse_params(m.group(3)))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or 5060

    def __str__(self) -> str:
        hp = f"{self.host}:{self.port}" if self.port else self.host
        return f"SIP/2.0/{self.transport} {hp}{format_params(self.params)}"


@dataclass
class SipUri:
    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        t = text.strip()
        scheme, colon, rest = t.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise SipParseError(f"URI {t[:80]!r} is not a sip: or sips: URI")
        rest, _, headers = rest.partition("?")
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, pc, pw = userinfo.partition(":")
            password = pw if pc else None
            if not user:
                raise SipParseError(f"URI {t[:80]!r} has an empty user part")
        hostport, _, params = rest.partition(";")
        host, port = _split_hostport(hostport, f"URI {t[:80]!r}")
        return cls(
            host=host,
            user=user,
            port=port,
            scheme=scheme,
            password=password,
            params=parse_params(params),
            headers=headers,
        )

    @property
    def hostport(self) -> tuple[str, int]:
        return self.host.strip("[]"), self.port or (5061 if self.scheme == "sips" else 5060)

    def __str__(self) -> str:
        s = f"{self.scheme}:"
        if self.user is not None:
            s += self.user
            if self.password is not None:
                s += f":{self.password}"
            s += "@"
        s += self.host
        if self.port:
            s += f":{self.port}"
        s += format_params(self.params)
        if self.headers:
            s += "?" + self.headers
        return s


@dataclass
class NameAddr:
    """`"Display" <sip:user@host>;tag=x` as used by From, To, Contact, Route, Record-Route."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        v = value.strip()
        if not v:
            raise SipParseError("empty name-addr (From/To/Contact) value")
        display: str | None = None
        if "<" in v:
            lt = v.index("<")
            gt = v.find(">", lt)
            if gt < 0:
                raise SipParseError(f"name-addr {v[:80]!r} has '<' without '>'")
            disp = v[:lt].strip()
            if disp.startswith('"') and disp.endswith('"') and len(disp) >= 2:
                disp = disp[1:-1].replace('\\"', '"')
            display = disp or None
            uri = SipUri.parse(v[lt + 1 : gt])
            params = parse_params(v[gt + 1 :])
        else:
            # addr-spec: parameters after the URI belong to the header, not the URI
            uri_s, _, params_s = v.partition(";")
            uri = SipUri.parse(uri_s)
            params = parse_params(params_s)
        return cls(uri=uri, display=display, params=params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(uri=self.uri, display=self.display, params={**self.params, "tag": tag})

    def __str__(self) -> str:
        disp = f'"{self.display}" ' if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"
