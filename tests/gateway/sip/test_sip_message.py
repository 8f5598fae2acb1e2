"""Golden parse/serialise tests for gateway.sip.message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sip.dialog import Dialog
from gateway.sip.message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    frame_stream,
    parse_message,
    split_commas,
)

GOLDEN = Path(__file__).parent / "golden"


def test_parse_compact_folded_multivalue_invite() -> None:
    msg = parse_message((GOLDEN / "invite_compact.sip").read_bytes())
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.uri == "sip:13812345678@carrier.example.com"
    h = msg.headers
    assert h["call-id"] == "a84b4c76e66710@10.0.0.5" == h["i"] == msg.call_id
    assert msg.cseq == (314159, "INVITE")
    vias = h.values("Via")
    assert len(vias) == 2
    top = msg.top_via
    assert (top.host, top.port, top.branch, top.params["rport"]) == (
        "10.0.0.5",
        5060,
        "z9hG4bK776asdhds",
        None,
    )
    assert Via.parse(vias[1]).params["received"] == "192.0.2.1"
    assert h.values("Record-Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert h["Subject"] == "folded continuation line"
    assert h.values("Supported") == ["100rel", "timer"]
    assert msg.content_type == "application/sdp"
    assert msg.body == b"v=0\r"  # Content-Length wins over trailing bytes
    frm = msg.from_
    assert frm.display == "Robot" and frm.tag == "1928301774" and frm.uri.user == "02150001234"
    assert msg.to.tag is None


def test_parse_response_100rel() -> None:
    msg = parse_message((GOLDEN / "ringing_100rel.sip").read_bytes())
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert msg.headers["RSeq"] == "1" and msg.headers.values("Require") == ["100rel"]
    assert msg.top_via.params["received"] == "10.0.0.5"


def test_serialise_in_dialog_bye_golden() -> None:
    inv = parse_message((GOLDEN / "invite_compact.sip").read_bytes())
    ringing = parse_message((GOLDEN / "ringing_100rel.sip").read_bytes())
    assert isinstance(inv, SipRequest) and isinstance(ringing, SipResponse)
    ok = SipResponse(status=200, reason="OK", headers=ringing.headers.copy())
    ok.headers.add("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    d = Dialog.from_uac(inv, ok)
    assert d.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    bye = d.request("BYE", via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport", user_agent="outcall/0.1")
    assert bye.to_bytes() == (GOLDEN / "bye_expected.sip").read_bytes()
    assert d.next_hop() == ("p2.example.com", 5060)
    # round trip
    again = parse_message(bye.to_bytes())
    assert again.to_bytes() == bye.to_bytes()


def test_strict_route_goes_in_request_uri() -> None:
    d = Dialog(
        call_id="c",
        local_tag="a",
        remote_tag="b",
        local_uri=NameAddr(SipUri("x.com", "me")),
        remote_uri=NameAddr(SipUri("y.com", "you")),
        remote_target=SipUri("192.0.2.4", "you"),
        route_set=["<sip:strict.example.com>", "<sip:p2.example.com;lr>"],
    )
    req = d.request("BYE", via="SIP/2.0/UDP h;branch=z9hG4bKx")
    assert req.uri == "sip:strict.example.com"
    assert req.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:you@192.0.2.4>"]


def test_content_length_always_written_and_header_order_kept() -> None:
    r = SipResponse(status=486, reason="Busy Here")
    r.headers.add("Via", "SIP/2.0/UDP a:1;branch=z9hG4bKq")
    r.headers.add("content-length", "99")  # ignored: recomputed
    r.headers.add("i", "x@y")
    assert r.to_bytes() == (
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKq\r\nCall-ID: x@y\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02garbage", "neither a request nor a status line"),
        (b"HELLO world\r\n\r\n", "neither a request nor a status line"),
        (b"SIP/2.0 99 Nope\r\n\r\n", "status line"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "mandatory header From is missing"),
        (b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", "is not 'Name: value'"),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"
            b"Call-ID: 1\r\nCSeq: one INVITE\r\n\r\n",
            "CSeq",
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"
            b"Call-ID: 1\r\nCSeq: 1 BYE\r\n\r\n",
            "does not match",
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"
            b"Call-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 50\r\n\r\nshort",
            "truncated",
        ),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: \xff\xfe\r\n\r\n", "not UTF-8"),
    ],
)
def test_garbage_rejected_with_reason(data: bytes, needle: str) -> None:
    with pytest.raises(SipParseError, match=needle.replace("(", r"\(")):
        parse_message(data)


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, {}),
        ("sip:13800000000@10.0.0.1:5080;user=phone", "13800000000", "10.0.0.1", 5080, {"user": "phone"}),
        ("sips:bob:pw@[2001:db8::1]:5061;transport=tcp", "bob", "[2001:db8::1]", 5061, {"transport": "tcp"}),
        ("sip:proxy.example.com;lr", None, "proxy.example.com", None, {"lr": None}),
    ],
)
def test_uri_parse_and_str(
    text: str, user: str | None, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    uri = SipUri.parse(text)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert str(uri) == text


@pytest.mark.parametrize("bad", ["http://x", "sip:@host", "sip:u@host:99999", "sip:u@ho st", "tel:+86"])
def test_bad_uri(bad: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(bad)


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"A \\"B\\"" <sip:a@b.com;transport=udp>;tag=xyz;expires=60')
    assert a.display == 'A "B"' and a.tag == "xyz" and a.uri.params == {"transport": "udp"}
    b = NameAddr.parse("sip:a@b.com;tag=t1")  # addr-spec: params belong to the header
    assert b.tag == "t1" and b.uri.params == {}
    assert str(b) == "<sip:a@b.com>;tag=t1"
    with pytest.raises(SipParseError, match="without '>'"):
        NameAddr.parse("<sip:a@b.com")


def test_headers_case_insensitive_set_remove() -> None:
    h = Headers([("via", "a"), ("VIA", "b"), ("x-custom", "1")])
    assert h.get_all("Via") == ["a", "b"]
    h.set("Via", "c")
    assert h.get_all("v") == ["c"]
    h.remove("X-CUSTOM")
    assert "x-custom" not in h
    assert split_commas('"a,b" <sip:x>, <sip:y;p=1,2>') == ['"a,b" <sip:x>', "<sip:y;p=1,2>"]


def test_frame_stream() -> None:
    one = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc"
    buf = bytearray(b"\r\n" + one + one[:10])
    assert frame_stream(buf) == one
    assert frame_stream(buf) is None
    buf += one[10:]
    assert frame_stream(buf) == one and not buf
    with pytest.raises(SipParseError, match="Content-Length is mandatory"):
        frame_stream(bytearray(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"))
