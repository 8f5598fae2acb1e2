"""Fixtures for the SIP unit tests: a stand-in for the RTP session (tests only) and UA factories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import pytest

from engine.audio import PCM, silence
from engine.call.playback import Playout
from gateway.sip.transaction import Timers
from gateway.sip.ua import UserAgent

FAST = Timers(t1=0.05, t2=0.4, t4=0.5)


class FakeMedia:
    """Implements the RtpSession contract without sockets: records what the leg asked for."""

    instances: list[FakeMedia] = []  # noqa: RUF012

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.local_host = "127.0.0.1"
        self.local_port = 40000 + len(FakeMedia.instances) * 2
        self.playout = Playout()
        self.on_dtmf: Callable[[str, int], None] | None = None
        self.on_timeout: Callable[[float], None] | None = None
        self.dtmf_method: Literal["rfc4733", "inband"] = "rfc4733"
        self.remote: list[dict[str, Any]] = []
        self.started = False
        self.closed = asyncio.Event()
        FakeMedia.instances.append(self)

    def set_remote(
        self,
        host: str,
        port: int,
        *,
        codec: Literal["PCMU", "PCMA"],
        payload_type: int,
        ptime_ms: int = 20,
        dtmf_payload_type: int | None = 101,
    ) -> None:
        self.remote.append(
            dict(
                host=host,
                port=port,
                codec=codec,
                payload_type=payload_type,
                ptime_ms=ptime_ms,
                dtmf_payload_type=dtmf_payload_type,
            )
        )

    def start(self) -> None:
        self.started = True

    async def frames(self) -> AsyncIterator[PCM]:
        while not self.closed.is_set():
            yield silence()
            await asyncio.sleep(0.02)

    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        return None

    def stats(self) -> dict[str, float]:
        return {"packets_sent": 0.0}

    async def close(self) -> None:
        self.closed.set()


async def fake_media(call_id: str) -> FakeMedia:
    return FakeMedia(call_id)


UaFactory = Callable[..., Awaitable[UserAgent]]


@pytest.fixture
def medias() -> list[Any]:
    """Every FakeMedia created so far (find a leg's by call_id)."""
    return FakeMedia.instances


@pytest.fixture
async def make_ua() -> AsyncIterator[UaFactory]:
    uas: list[UserAgent] = []

    async def factory(**kwargs: Any) -> UserAgent:
        kwargs.setdefault("timers", FAST)
        kwargs.setdefault("media_factory", fake_media)
        ua = UserAgent(**kwargs)
        await ua.start()
        uas.append(ua)
        return ua

    yield factory
    for ua in uas:
        await ua.close()
