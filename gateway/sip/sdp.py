"""SDP offer/answer for G.711 voice (RFC 4566, RFC 3264, RFC 4733 telephone-event).

We offer PCMA first (Chinese carriers), then PCMU, plus telephone-event/8000 on payload type 101, 20 ms
ptime, sendrecv. An answer (or an incoming offer) is reduced to a `NegotiatedMedia`: where to send, which
codec and payload type, the packet time and the DTMF payload type. No common codec raises `SdpError`
(the UA ends the call as failed, or answers 488 when it is the callee).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Codec = Literal["PCMU", "PCMA"]

STATIC_PT: dict[int, Codec] = {0: "PCMU", 8: "PCMA"}
CODEC_PT: dict[Codec, int] = {"PCMU": 0, "PCMA": 8}
DEFAULT_CODECS: tuple[Codec, ...] = ("PCMA", "PCMU")
ALLOWED_PTIME = (10, 20, 30)


class SdpError(ValueError):
    """SDP could not be parsed or has nothing we can use (no audio, no common codec)."""


@dataclass(frozen=True)
class NegotiatedMedia:
    host: str
    port: int
    codec: Codec
    payload_type: int
    ptime_ms: int = 20
    dtmf_payload_type: int | None = None
    direction: str = "sendrecv"


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMA/8000"
    connection: str | None = None
    ptime: int | None = None
    direction: str | None = None


@dataclass
class SessionDescription:
    origin: str = ""
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)
    direction: str | None = None

    def audio(self) -> MediaDescription:
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        raise SdpError("SDP has no active audio stream (m=audio with a non-zero port)")


def parse_sdp(data: bytes | str) -> SessionDescription:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    sd = SessionDescription()
    cur: MediaDescription | None = None
    seen_v = False
    for lineno, raw in enumerate(re.split(r"\r?\n", text), 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"SDP line {lineno} {line[:40]!r} is not '<type>=<value>'")
        kind, value = line[0], line[2:]
        if kind == "v":
            seen_v = True
        elif kind == "o":
            sd.origin = value
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN":
                raise SdpError(f"SDP line {lineno}: bad connection {value!r}")
            host = parts[2].split("/")[0]
            if cur is None:
                sd.connection = host
            else:
                cur.connection = host
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"SDP line {lineno}: bad media line {value!r}")
            fmts = [int(p) for p in parts[3:] if p.isdigit()]
            cur = MediaDescription(parts[0], int(parts[1].split("/")[0]), parts[2], fmts)
            sd.media.append(cur)
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if cur is None:
                    sd.direction = name
                else:
                    cur.direction = name
            elif cur is not None and name == "rtpmap":
                pt_s, _, enc = arg.partition(" ")
                if pt_s.strip().isdigit():
                    cur.rtpmap[int(pt_s)] = enc.strip()
            elif cur is not None and name == "ptime" and arg.strip().isdigit():
                cur.ptime = int(arg.strip())
    if not seen_v:
        raise SdpError("SDP has no v= line")
    return sd


def _codec_of(md: MediaDescription, pt: int) -> Codec | None:
    enc = md.rtpmap.get(pt)
    if enc is not None:
        name = enc.split("/")[0].upper()
        rate = enc.split("/")[1] if "/" in enc else "8000"
        if name in ("PCMU", "PCMA") and rate == "8000":
            return name  # type: ignore[return-value]
        return None
    return STATIC_PT.get(pt)


def _dtmf_pt(md: MediaDescription) -> int | None:
    for pt in md.formats:
        enc = md.rtpmap.get(pt, "")
        if enc.lower().startswith("telephone-event/8000"):
            return pt
    return None


def _ptime(md: MediaDescription) -> int:
    p = md.ptime or 20
    if p in ALLOWED_PTIME:
        return p
    return min(ALLOWED_PTIME, key=lambda a: abs(a - p))


def _direction(sd: SessionDescription, md: MediaDescription) -> str:
    return md.direction or sd.direction or "sendrecv"


def negotiate(
    remote: SessionDescription, supported: tuple[Codec, ...] = DEFAULT_CODECS, *, prefer_remote: bool = True
) -> NegotiatedMedia:
    """Pick the codec from a remote description (an answer, or an offer we answer).

    `prefer_remote`: the remote's order wins (an answer's first codec is what the answerer will send).
    """
    md = remote.audio()
    host = md.connection or remote.connection
    if not host:
        raise SdpError("SDP audio stream has no c= connection address")
    common = [(pt, c) for pt in md.formats if (c := _codec_of(md, pt)) is not None and c in supported]
    if not common:
        offered = ", ".join(md.rtpmap.get(pt, str(pt)) for pt in md.formats) or "none"
        raise SdpError(f"no common codec: remote offers [{offered}], we support {list(supported)}")
    if not prefer_remote:
        common.sort(key=lambda pc: supported.index(pc[1]))
    pt, codec = common[0]
    return NegotiatedMedia(
        host=host,
        port=md.port,
        codec=codec,
        payload_type=pt,
        ptime_ms=_ptime(md),
        dtmf_payload_type=_dtmf_pt(md),
        direction=_direction(remote, md),
    )


_OPPOSITE = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive", "sendrecv": "sendrecv"}


def build_sdp(
    host: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    codecs: tuple[Codec, ...] | list[tuple[Codec, int]] = DEFAULT_CODECS,
    ptime: int = 20,
    dtmf_pt: int | None = 101,
    direction: str = "sendrecv",
    username: str = "outcall",
) -> bytes:
    """An SDP body. `codecs` is either codec names (static payload types) or (codec, pt) pairs."""
    if ptime not in ALLOWED_PTIME:
        raise SdpError(f"ptime {ptime} not supported; use one of {ALLOWED_PTIME}")
    pairs: list[tuple[Codec, int]] = [(c, CODEC_PT[c]) if isinstance(c, str) else c for c in codecs]
    fmts = [str(pt) for _, pt in pairs]
    if dtmf_pt is not None:
        fmts.append(str(dtmf_pt))
    ipv = "IP6" if ":" in host else "IP4"
    lines = [
        "v=0",
        f"o={username} {session_id} {version} IN {ipv} {host}",
        "s=outcall",
        f"c=IN {ipv} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(fmts)}",
    ]
    lines += [f"a=rtpmap:{pt} {c}/8000" for c, pt in pairs]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += [f"a=ptime:{ptime}", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    host: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    codecs: tuple[Codec, ...] = DEFAULT_CODECS,
    ptime: int = 20,
    dtmf_pt: int | None = 101,
) -> bytes:
    """Our offer. `host` is the address the far end should send RTP to (the public one if configured)."""
    return build_sdp(
        host, port, session_id=session_id, version=version, codecs=codecs, ptime=ptime, dtmf_pt=dtmf_pt
    )


def parse_answer(data: bytes | str, *, codecs: tuple[Codec, ...] = DEFAULT_CODECS) -> NegotiatedMedia:
    """Reduce the far end's answer to what we send and receive."""
    return negotiate(parse_sdp(data), codecs, prefer_remote=True)


def answer_offer(
    offer: bytes | str,
    host: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    codecs: tuple[Codec, ...] = DEFAULT_CODECS,
) -> tuple[bytes, NegotiatedMedia]:
    """Answer an incoming offer (we are the callee, or a re-INVITE): one codec, the offerer's DTMF pt."""
    remote = parse_sdp(offer)
    neg = negotiate(remote, codecs, prefer_remote=True)
    body = build_sdp(
        host,
        port,
        session_id=session_id,
        version=version,
        codecs=[(neg.codec, neg.payload_type)],
        ptime=neg.ptime_ms,
        dtmf_pt=neg.dtmf_payload_type,
        direction=_OPPOSITE.get(neg.direction, "sendrecv"),
    )
    return body, neg
