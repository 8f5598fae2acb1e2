"""Proves the peers: every UAS scenario against its sipp UAC twin, baresip, Kamailio, mosquitto."""

from __future__ import annotations

import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers import (
    AUTH_PASSWORD,
    AUTH_USER,
    Baresip,
    Kamailio,
    Mosquitto,
    SippClient,
    SippServer,
    tts_wav,
)

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., SippServer]
ClientFactory = Callable[..., SippClient]

# (UAS scenario, UAC scenario, UAS kwargs)
PAIRS: list[tuple[str, str, dict[str, object]]] = [
    ("uas_answer_echo.xml", "uac_answer_echo.xml", {"rtp_echo": True}),
    ("uas_busy_486.xml", "uac_busy_486.xml", {}),
    ("uas_no_answer.xml", "uac_no_answer.xml", {}),
    ("uas_auth_401.xml", "uac_auth.xml", {}),
    ("uas_auth_407.xml", "uac_auth.xml", {}),
    ("uas_100rel.xml", "uac_100rel.xml", {}),
    ("uas_far_end_bye.xml", "uac_far_end_bye.xml", {}),
    ("uas_lost_200.xml", "uac_lost_200.xml", {}),
    ("uas_forked_2xx.xml", "uac_forked_2xx.xml", {}),
    ("uas_200_after_cancel.xml", "uac_200_after_cancel.xml", {}),
    ("uas_reinvite.xml", "uac_reinvite.xml", {"rtp_echo": True}),
]


@pytest.mark.parametrize(("uas", "uac", "kwargs"), PAIRS, ids=[p[0] for p in PAIRS])
def test_uas_scenario_against_sipp_uac(
    sipp_server: ServerFactory, sipp_client: ClientFactory, uas: str, uac: str, kwargs: dict[str, object]
) -> None:
    server = sipp_server(uas, timeout_s=15, **kwargs)
    client = sipp_client(uac, server.address, timeout_s=15)
    client_result = client.wait()
    if not client_result.ok:
        server.stop()  # do not wait for its timeout
    client_result.check()
    server.wait().check()


def test_auth_401_rejects_wrong_password(sipp_server: ServerFactory, sipp_client: ClientFactory) -> None:
    """verifyauth really checks the digest: a wrong password fails the UAS's call."""
    server = sipp_server("uas_auth_401.xml", timeout_s=10)
    client = sipp_client("uac_auth.xml", server.address, timeout_s=10, extra_args=["-ap", "wrong"])
    client.wait()
    result = server.wait()
    assert not result.ok
    assert "403 Forbidden" in result.messages


class RtpSink:
    """A UDP socket counting the RTP packets sent to it (arrival time, payload type, payload size)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.packets: list[tuple[float, int, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except OSError:
                return
            if len(data) >= 12:
                self.packets.append((time.monotonic(), data[1] & 0x7F, len(data) - 12))

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def rtp_sink() -> Iterator[RtpSink]:
    sink = RtpSink()
    yield sink
    sink.close()


def test_early_media_announcement_then_480(
    sipp_server: ServerFactory, sipp_client: ClientFactory, rtp_sink: RtpSink
) -> None:
    server = sipp_server("uas_early_media_480.xml", timeout_s=15)
    client = sipp_client(
        "uac_early_media_480.xml", server.address, timeout_s=15, keys={"rtp_port": str(rtp_sink.port)}
    )
    client.wait().check()
    result = server.wait().check()
    assert "183 Session Progress" in result.messages and "480 Temporarily Unavailable" in result.messages
    # The 3.2 s announcement arrived as PCMA early media, 20 ms per packet.
    assert 140 <= len(rtp_sink.packets) <= 170, len(rtp_sink.packets)
    assert {pt for _, pt, _ in rtp_sink.packets} == {8}
    assert {size for _, _, size in rtp_sink.packets} == {160}


def test_rtp_stops_but_dialog_stays(
    sipp_server: ServerFactory, sipp_client: ClientFactory, rtp_sink: RtpSink
) -> None:
    server = sipp_server("uas_rtp_stops.xml", timeout_s=15)
    client = sipp_client(
        "uac_rtp_stops.xml", server.address, timeout_s=15, keys={"rtp_port": str(rtp_sink.port)}
    )
    client.wait().check()
    done = time.monotonic()
    server.wait().check()
    assert 70 <= len(rtp_sink.packets) <= 85, len(rtp_sink.packets)  # 1.56 s of speech
    silent_for = done - rtp_sink.packets[-1][0]
    assert silent_for > 0.5, f"media should have stopped well before the BYE ({silent_for:.2f}s)"


def test_baresip_answers_sipp_and_records(
    baresip: Callable[..., Baresip], sipp_client: ClientFactory, tmp_path: Path
) -> None:
    say = tts_wav("你好", tmp_path / "hello.wav")
    phone = baresip(audio=say, tail_s=5.0)
    client = sipp_client("uac", phone.address, service="callee", timeout_s=10, extra_args=["-d", "500"])
    client.wait().check()
    phone.wait_event("CALL_CLOSED", 5)
    assert "200 OK" in client.messages()
    dec = phone.recording("dec")
    enc = phone.recording("enc")
    with wave.open(str(enc)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        assert w.getnframes() > 0
    assert dec.exists()


def test_baresip_ctrl_hangup(baresip: Callable[..., Baresip], sipp_client: ClientFactory) -> None:
    """ctrl_tcp hangup makes baresip send BYE: sipp's far_end_bye UAC expects exactly that."""
    phone = baresip(tail_s=10.0)
    client = sipp_client("uac_far_end_bye.xml", phone.address, service="callee", timeout_s=10)
    phone.wait_event("CALL_ESTABLISHED", 5)
    assert phone.hangup()["ok"] is True
    client.wait().check()


def test_kamailio_challenges_then_relays_with_record_route(
    kamailio: Kamailio, sipp_server: ServerFactory, sipp_client: ClientFactory
) -> None:
    server = sipp_server("uas_answer_echo.xml", timeout_s=10)
    client = sipp_client("uac_auth.xml", server.address, proxy=kamailio.address, timeout_s=10)
    client.wait().check()
    result = server.wait().check()
    uac_log = client.messages()
    assert "407 Proxy Authentication Required" in uac_log
    assert f'Proxy-Authorization: Digest username="{AUTH_USER}"' in uac_log
    # The callee saw the proxy's Record-Route and the in-dialog requests came through the proxy.
    assert f"Record-Route: <sip:{kamailio.address};lr" in result.messages
    assert f"Route: <sip:{kamailio.address};lr" in uac_log


PROXIED = [
    "uas_no_answer.xml",
    "uas_far_end_bye.xml",
    "uas_reinvite.xml",
    "uas_100rel.xml",
    "uas_forked_2xx.xml",
]


@pytest.mark.parametrize("uas", PROXIED)
def test_scenario_through_kamailio(
    kamailio_open: Kamailio, sipp_server: ServerFactory, sipp_client: ClientFactory, uas: str
) -> None:
    """The in-dialog parts (CANCEL, callee BYE, re-INVITE, PRACK, forked 2xx) also work through a proxy."""
    pair = {p[0]: p[1] for p in PAIRS}
    server = sipp_server(uas, timeout_s=10)
    client = sipp_client(pair[uas], server.address, proxy=kamailio_open.address, timeout_s=10)
    client_result = client.wait()
    if not client_result.ok:
        server.stop()
    client_result.check()
    result = server.wait().check()
    assert f"Record-Route: <sip:{kamailio_open.address};lr" in result.messages


def test_kamailio_rejects_wrong_password(
    kamailio: Kamailio, sipp_server: ServerFactory, sipp_client: ClientFactory
) -> None:
    server = sipp_server("uas_answer_echo.xml", timeout_s=5)
    client = sipp_client(
        "uac_auth.xml", server.address, proxy=kamailio.address, timeout_s=5, extra_args=["-ap", "wrong"]
    )
    assert not client.wait().ok
    assert "INVITE" not in server.messages()
    assert AUTH_PASSWORD != "wrong"


def test_mosquitto_accepts_and_restarts(mosquitto: Mosquitto) -> None:
    for _ in range(2):
        with socket.create_connection((mosquitto.host, mosquitto.port), timeout=2) as s:
            # MQTT 3.1.1 CONNECT (clean session, keepalive 10, client id "t") -> CONNACK 0x20 0x02 0x00 0x00
            s.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 1]) + b"t")
            assert s.recv(4) == bytes([0x20, 2, 0, 0])
        mosquitto.restart()
