"""SDP offer/answer negotiation."""

from __future__ import annotations

import pytest

from gateway.sip.sdp import NegotiatedMedia, SdpError, answer_offer, build_offer, parse_answer, parse_sdp


def test_offer_golden() -> None:
    assert build_offer("203.0.113.7", 30000, session_id=42) == (
        b"v=0\r\no=outcall 42 1 IN IP4 203.0.113.7\r\ns=outcall\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 96\r\nc=IN IP4 192.0.2.2\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n"
)


def test_answer_negotiated() -> None:
    neg = parse_answer(ANSWER)
    assert neg == NegotiatedMedia(
        host="192.0.2.2",
        port=4000,
        codec="PCMU",
        payload_type=0,
        ptime_ms=30,
        dtmf_payload_type=96,
        direction="sendrecv",
    )


def test_answer_static_payload_without_rtpmap_and_odd_ptime() -> None:
    sdp = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 5000 RTP/AVP 8\r\na=ptime:25\r\na=sendonly\r\n"
    neg = parse_answer(sdp)
    assert (neg.codec, neg.payload_type, neg.ptime_ms, neg.dtmf_payload_type, neg.direction) == (
        "PCMA",
        8,
        20,
        None,
        "sendonly",
    )


def test_no_common_codec() -> None:
    sdp = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 5000 RTP/AVP 18 9\r\na=rtpmap:18 G729/8000\r\n"
    with pytest.raises(SdpError, match="no common codec"):
        parse_answer(sdp)
    with pytest.raises(SdpError, match="no common codec"):
        answer_offer(sdp, "127.0.0.1", 6000, session_id=1)


@pytest.mark.parametrize(
    ("sdp", "needle"),
    [
        ("c=IN IP4 1.2.3.4\r\n", "no v= line"),
        ("v=0\r\nm=audio 0 RTP/AVP 0\r\n", "no active audio"),
        ("v=0\r\nm=audio 5000 RTP/AVP 0\r\n", "no c= connection"),
        ("v=0\r\ngarbage\r\n", "is not '<type>=<value>'"),
    ],
)
def test_bad_sdp(sdp: str, needle: str) -> None:
    with pytest.raises(SdpError, match=needle):
        parse_answer(sdp)


def test_uas_answer_keeps_offerer_pt_and_one_codec() -> None:
    offer = (
        "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 0 8 100\r\na=rtpmap:100 telephone-event/8000\r\na=ptime:20\r\na=recvonly\r\n"
    )
    body, neg = answer_offer(offer, "127.0.0.1", 6000, session_id=5)
    assert (neg.codec, neg.port, neg.dtmf_payload_type) == ("PCMU", 7000, 100)
    ans = parse_sdp(body)
    audio = ans.audio()
    assert audio.formats == [0, 100] and audio.port == 6000 and audio.direction == "sendonly"
    assert parse_answer(body).codec == "PCMU"
