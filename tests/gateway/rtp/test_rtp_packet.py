"""RTP/RTCP wire format: golden bytes, round trips, malformed input."""

from __future__ import annotations

import pytest

from gateway.rtp.packet import (
    PacketError,
    ReportBlock,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtpPacket,
    is_rtcp,
    pack_header_into,
    parse_rtcp,
    payload_offset,
)

# V=2 P=0 X=0 CC=0 | M=1 PT=0 | seq 0x1234 | ts 0xDEADBEEF | ssrc 0x11223344 | 4 bytes of µ-law silence
GOLDEN_SIMPLE = bytes.fromhex("8080 1234 deadbeef 11223344 ffffffff")
# V=2 P=1 X=1 CC=2 | M=0 PT=101 | seq 65535 | ts 160 | ssrc 1 | csrc 2, 3 | ext profile 0xBEDE, 1 word |
# payload 01 8a 03 20 (telephone-event '1', end, vol 10, duration 800) | 3 padding bytes (00 00 03)
GOLDEN_FULL = bytes.fromhex("b265 ffff 000000a0 00000001 00000002 00000003 bede0001 10ff0000 018a0320 000003")


def test_serialize_simple_matches_golden_bytes() -> None:
    p = RtpPacket(
        payload_type=0,
        sequence_number=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x11223344,
        payload=b"\xff" * 4,
        marker=True,
    )
    assert p.serialize() == GOLDEN_SIMPLE


def test_parse_simple_golden() -> None:
    p = RtpPacket.parse(GOLDEN_SIMPLE)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (0, 0x1234, 0xDEADBEEF, 0x11223344)
    assert p.marker is True
    assert p.payload == b"\xff" * 4
    assert p.csrc == [] and p.extension_profile is None and p.padding_size == 0


def test_parse_full_header_golden_and_round_trip() -> None:
    p = RtpPacket.parse(GOLDEN_FULL)
    assert p.payload_type == 101 and not p.marker
    assert p.sequence_number == 65535 and p.timestamp == 160 and p.ssrc == 1
    assert p.csrc == [2, 3]
    assert p.extension_profile == 0xBEDE and p.extension_value == bytes.fromhex("10ff0000")
    assert p.payload == bytes.fromhex("018a0320")
    assert p.padding_size == 3
    assert p.serialize() == GOLDEN_FULL
    assert payload_offset(GOLDEN_FULL) == (28, 32)


def test_pack_header_into_matches_serialize() -> None:
    buf = bytearray(16)
    pack_header_into(buf, 8, False, 70000, (1 << 32) + 5, 0xCAFEBABE)
    expect = RtpPacket(
        payload_type=8, sequence_number=70000 & 0xFFFF, timestamp=5, ssrc=0xCAFEBABE
    ).serialize()
    assert bytes(buf[:12]) == expect


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "short"),
        (bytes.fromhex("8000 0001 00000000"), "short"),
        (bytes.fromhex("4000 0001 00000000 00000000"), "version"),
        (bytes.fromhex("8300 0001 00000000 00000000 00000001"), "CSRC"),
        (bytes.fromhex("9000 0001 00000000 00000000 bede00ff"), "extension"),
        (bytes.fromhex("a000 0001 00000000 00000000 00"), "padding"),
        (bytes.fromhex("a000 0001 00000000 00000000 0000ff"), "padding"),
    ],
)
def test_malformed_rtp_raises_packet_error(data: bytes, why: str) -> None:
    with pytest.raises(PacketError):
        RtpPacket.parse(data)
    with pytest.raises(PacketError):
        payload_offset(data)


def test_rtcp_receiver_report_golden_and_round_trip() -> None:
    block = ReportBlock(
        ssrc=0x11223344,
        fraction_lost=25,
        packets_lost=-3,
        highest_sequence=0x10005,
        jitter=40,
        lsr=0x01020304,
        dlsr=0x10,
    )
    rr = RtcpReceiverReport(ssrc=0xAABBCCDD, reports=(block,))
    data = rr.serialize()
    assert data == bytes.fromhex("81c9 0007 aabbccdd 11223344 19fffffd 00010005 00000028 01020304 00000010")
    assert is_rtcp(data)
    assert parse_rtcp(data) == [rr]


def test_rtcp_sender_report_compound_round_trip() -> None:
    sr = RtcpSenderReport(
        ssrc=7,
        ntp_timestamp=(3_900_000_000 << 32) | 12345,
        rtp_timestamp=160,
        packet_count=50,
        octet_count=8000,
    )
    rr = RtcpReceiverReport(ssrc=7)
    sdes = bytes.fromhex("81ca 0002 00000007 01000000")  # skipped, not an error
    parsed = parse_rtcp(sr.serialize() + sdes + rr.serialize())
    assert parsed == [sr, rr]
    assert not is_rtcp(GOLDEN_SIMPLE)


def test_rtcp_truncated_raises() -> None:
    data = RtcpReceiverReport(ssrc=1, reports=(ReportBlock(1, 0, 0, 0, 0),)).serialize()
    with pytest.raises(PacketError):
        parse_rtcp(data[:-4])
