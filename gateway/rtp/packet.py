"""RTP (RFC 3550 §5.1) and minimal RTCP SR/RR (RFC 3550 §6.4) wire formats.

Parsers raise `PacketError` (a ValueError) on malformed input; the datagram protocol catches it, counts the
packet as malformed and drops it, so bad input never leaves the protocol as an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RTCP_HEADER = struct.Struct("!BBHI")
_SENDER_INFO = struct.Struct("!IIIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")

RTCP_SR = 200
RTCP_RR = 201


class PacketError(ValueError):
    """A datagram that is not a well-formed RTP/RTCP packet."""


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192..223 occupy the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension_value: bytes = b""
    padding_size: int = 0

    def serialize(self) -> bytes:
        b0 = RTP_VERSION << 6 | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        out = bytearray(
            _HEADER.pack(
                b0,
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        )
        for c in self.csrc:
            out += _U32.pack(c)
        if self.extension_profile is not None:
            if len(self.extension_value) % 4:
                raise PacketError("RTP header extension length must be a multiple of 4 bytes")
            out += _U16.pack(self.extension_profile) + _U16.pack(len(self.extension_value) // 4)
            out += self.extension_value
        out += self.payload
        if self.padding_size:
            if not 1 <= self.padding_size <= 255:
                raise PacketError("RTP padding size must be 1..255")
            out += bytes(self.padding_size - 1) + bytes([self.padding_size])
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        n = len(data)
        if n < RTP_HEADER_SIZE:
            raise PacketError(f"RTP packet too short ({n} bytes, need {RTP_HEADER_SIZE})")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
        if b0 >> 6 != RTP_VERSION:
            raise PacketError(f"RTP version {b0 >> 6} (expected 2)")
        pos = RTP_HEADER_SIZE
        cc = b0 & 0x0F
        if pos + 4 * cc > n:
            raise PacketError("RTP CSRC list runs past the end of the packet")
        csrc = [_U32.unpack_from(data, pos + 4 * i)[0] for i in range(cc)]
        pos += 4 * cc
        ext_profile: int | None = None
        ext_value = b""
        if b0 & 0x10:
            if pos + 4 > n:
                raise PacketError("RTP extension header runs past the end of the packet")
            ext_profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if pos + 4 * words > n:
                raise PacketError("RTP extension runs past the end of the packet")
            ext_value = bytes(data[pos : pos + 4 * words])
            pos += 4 * words
        end = n
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > n:
                raise PacketError(f"RTP padding length {padding} is invalid")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension_profile=ext_profile,
            extension_value=ext_value,
            padding_size=padding,
        )


def payload_offset(data: bytes) -> tuple[int, int]:
    """(start, end) of the payload of an RTP packet, validating lengths; cheaper than a full parse."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise PacketError(f"RTP packet too short ({n} bytes)")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise PacketError(f"RTP version {b0 >> 6} (expected 2)")
    pos = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if pos + 4 > n:
            raise PacketError("RTP extension header runs past the end of the packet")
        pos += 4 + 4 * _U16.unpack_from(data, pos + 2)[0]
    end = n
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0:
            raise PacketError("RTP padding length 0 is invalid")
        end -= padding
    if pos > end:
        raise PacketError("RTP header runs past the end of the packet")
    return pos, end


def pack_header_into(
    buf: bytearray, payload_type: int, marker: bool, seq: int, timestamp: int, ssrc: int
) -> None:
    """Write a 12-byte RTP header (no CSRC/extension/padding) at the start of `buf` (hot path)."""
    _HEADER.pack_into(
        buf, 0, 0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )


# --- RTCP (minimal: SR and RR with report blocks) ---------------------------------------------------


@dataclass(slots=True, frozen=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255, fixed point /256
    packets_lost: int  # cumulative, 24-bit signed
    highest_sequence: int  # extended
    jitter: int  # timestamp units
    lsr: int = 0
    dlsr: int = 0

    def pack(self) -> bytes:
        lost = self.packets_lost & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def unpack_from(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, fl, hs, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = fl & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, fl >> 24, lost, hs, jitter, lsr, dlsr)


@dataclass(slots=True, frozen=True)
class RtcpSenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = _SENDER_INFO.pack(
            self.ntp_timestamp >> 32,
            self.ntp_timestamp & 0xFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(r.pack() for r in self.reports)
        return _rtcp_header(RTCP_SR, len(self.reports), self.ssrc, len(body)) + body


@dataclass(slots=True, frozen=True)
class RtcpReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = b"".join(r.pack() for r in self.reports)
        return _rtcp_header(RTCP_RR, len(self.reports), self.ssrc, len(body)) + body


RtcpPacket = RtcpSenderReport | RtcpReceiverReport


def _rtcp_header(pt: int, count: int, ssrc: int, body_len: int) -> bytes:
    if count > 31:
        raise PacketError("RTCP report count must be <= 31")
    words = (8 + body_len) // 4 - 1
    return _RTCP_HEADER.pack(RTP_VERSION << 6 | count, pt, words, ssrc)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; SR and RR are decoded, other types (SDES, BYE, APP...) skipped."""
    out: list[RtcpPacket] = []
    pos = 0
    n = len(data)
    if n < 4:
        raise PacketError(f"RTCP packet too short ({n} bytes)")
    while pos < n:
        if pos + 4 > n:
            raise PacketError("RTCP header truncated")
        b0, pt, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise PacketError(f"RTCP version {b0 >> 6} (expected 2)")
        length = 4 * (words + 1)
        if pos + length > n:
            raise PacketError("RTCP packet length runs past the end of the datagram")
        count = b0 & 0x1F
        if pt == RTCP_SR:
            if length < 28 + 24 * count:
                raise PacketError("RTCP SR shorter than its report count")
            ssrc = _U32.unpack_from(data, pos + 4)[0]
            ntp_hi, ntp_lo, rtp_ts, pc, oc = _SENDER_INFO.unpack_from(data, pos + 8)
            blocks = tuple(ReportBlock.unpack_from(data, pos + 28 + 24 * i) for i in range(count))
            out.append(RtcpSenderReport(ssrc, ntp_hi << 32 | ntp_lo, rtp_ts, pc, oc, blocks))
        elif pt == RTCP_RR:
            if length < 8 + 24 * count:
                raise PacketError("RTCP RR shorter than its report count")
            ssrc = _U32.unpack_from(data, pos + 4)[0]
            blocks = tuple(ReportBlock.unpack_from(data, pos + 8 + 24 * i) for i in range(count))
            out.append(RtcpReceiverReport(ssrc, blocks))
        pos += length
    return out
