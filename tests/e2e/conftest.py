"""Fixtures for real-peer tests. Each skips only when its binary is missing; all processes die at teardown.

def test_busy(sipp_server):
    uas = sipp_server("uas_busy_486.xml")          # started, listening on uas.address
    ...dial uas.uri()...
    uas.wait(10).check()

async def test_talk(baresip):
    callee = baresip(audio=wav, delay_s=1.0, tail_s=6.0)
    ...dial callee.uri...; await callee.wait_event_async("CALL_CLOSED")
    dec = callee.recording("dec")
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Baresip, Kamailio, Mosquitto, SippClient, SippServer

from gateway.sip.ua import UserAgent

_APT = {
    "sipp": "sip-tester",
    "baresip": "baresip-core",
    "kamailio": "kamailio",
    "mosquitto": "mosquitto",
    "sox": "sox",
    "espeak-ng": "espeak-ng",
}


def require_binaries(*names: str) -> None:
    """Skip the test when a peer binary is absent (it is installed in CI, so there it runs)."""
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(
                f"{name} not installed (apt-get install --no-install-recommends {_APT.get(name, name)})"
            )


@pytest.fixture
def sipp_server(tmp_path: Path) -> Iterator[Callable[..., SippServer]]:
    """Factory: ``sipp_server(scenario, calls=1, rtp_echo=False, timeout_s=30, keys=..., extra_args=...)``
    returns a started SippServer (``.uri()``, ``.address``, ``.wait()``, ``.wait_async()``)."""
    require_binaries("sipp")
    started: list[SippServer] = []

    def make(scenario: str | Path = "uas_answer_echo.xml", **kwargs: Any) -> SippServer:
        kwargs.setdefault("workdir", tmp_path)
        server = SippServer(scenario, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sipp_client(tmp_path: Path) -> Iterator[Callable[..., SippClient]]:
    """Factory: ``sipp_client(scenario, remote="host:port", proxy=None, service=..., ...)`` returns a
    started SippClient; ``.wait()`` gives its SippResult."""
    require_binaries("sipp")
    started: list[SippClient] = []

    def make(scenario: str | Path, remote: str, **kwargs: Any) -> SippClient:
        kwargs.setdefault("workdir", tmp_path)
        client = SippClient(scenario, remote, **kwargs)
        started.append(client)
        return client.start()

    yield make
    for client in started:
        client.stop()


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """Factory: ``baresip(audio=None, delay_s=0, tail_s=10, user="callee", codecs=("PCMU", "PCMA"))``
    returns a started auto-answering Baresip; dial ``.uri``."""
    require_binaries("baresip", "sox")
    started: list[Baresip] = []

    def make(**kwargs: Any) -> Baresip:
        kwargs.setdefault("workdir", tmp_path)
        phone = Baresip(**kwargs)
        started.append(phone)
        return phone.start()

    yield make
    for phone in started:
        phone.stop()


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    """Our user agent on loopback (RTP inactivity 10 s); files that need another one define their own."""
    agent = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=10.0)
    await agent.start()
    yield agent
    await agent.close()


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    """A started Kamailio proxy challenging INVITEs with 407 (peers.AUTH_USER / AUTH_PASSWORD)."""
    require_binaries("kamailio")
    proxy = Kamailio(workdir=tmp_path)
    try:
        yield proxy.start()
    finally:
        proxy.stop()


@pytest.fixture
def kamailio_open(tmp_path: Path) -> Iterator[Kamailio]:
    """A started Kamailio that relays (record-routing) without any auth challenge."""
    require_binaries("kamailio")
    proxy = Kamailio(workdir=tmp_path, auth=False)
    try:
        yield proxy.start()
    finally:
        proxy.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started anonymous mosquitto broker on 127.0.0.1 (``.host``, ``.port``, ``.restart()``)."""
    require_binaries("mosquitto")
    broker = Mosquitto(workdir=tmp_path)
    try:
        yield broker.start()
    finally:
        broker.stop()
