"""Webhooks against a real loopback HTTP server: signature verified as a receiver would, tampering and
replays refused, filters, retry on 5xx through the outbox, permanent 4xx to dead letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.dispositions import Disposition
from engine.errors import ConfigError
from engine.outcome import CallOutcome
from gateway.delivery import OutboxDeliverer
from gateway.store.outbox import RetryPolicy
from gateway.store.sqlite import SqliteStore
from gateway.webhook import (
    ID_HEADER,
    SIGNATURE_HEADER,
    WebhookConfig,
    WebhookFilters,
    WebhookSink,
    sign,
    verify_signature,
)

SECRET = b"s3cret-shared-with-the-crm"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def outcome(i: int, grade: str = "A", disp: Disposition = Disposition.ANSWERED) -> CallOutcome:
    return CallOutcome(
        call_id=f"call-{i}",
        campaign="spring",
        to=f"+86138{i:08d}",
        disposition=disp,
        grade=grade,
        started_at=T0,
        ended_at=T0,
    )


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server (asyncio streams) that verifies signatures like a CRM would."""

    statuses: list[int] = field(default_factory=list)  # scripted replies, then 200
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.got.append((headers, body))
                self.verified.append(verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()]))
                status = self.statuses.pop(0) if self.statuses else 200
                reply = b'{"ok":true}' if status < 300 else b'{"error":"nope"}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                await writer.drain()
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    r.port = server.sockets[0].getsockname()[1]
    async with server:
        yield r


def test_verify_signature_accepts_fresh_and_refuses_tampered_or_replayed() -> None:
    body = b'{"outcome_id":"abc","grade":"A"}'
    now = 1_790_000_000
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, body, header, now=now + 10)
    assert not verify_signature(SECRET, body.replace(b"A", b"B"), header, now=now), "tampered body"
    assert not verify_signature(b"other", body, header, now=now), "wrong secret"
    forged_ts = header.replace(f"t={now}", f"t={now + 100}")
    assert not verify_signature(SECRET, body, forged_ts, now=now + 100), "timestamp is signed too"
    assert not verify_signature(SECRET, body, header, now=now + 301), "replay after the 300 s window"
    assert verify_signature(SECRET, body, header, now=now + 301, tolerance_s=600)
    assert not verify_signature(SECRET, body, header, now=now - 301), "from the future"
    assert not verify_signature(SECRET, body, "garbage", now=now)
    assert not verify_signature(SECRET, body, "t=x,v1=00", now=now)


def test_filters() -> None:
    f = WebhookFilters(grades=["A", "B"], dispositions=["answered"])
    assert f.accepts(outcome(1, "A"))
    assert not f.accepts(outcome(1, "C"))
    assert not f.accepts(outcome(1, "A", Disposition.BUSY))
    assert WebhookFilters().accepts(outcome(1, "E", Disposition.BUSY))
    assert not WebhookFilters(campaigns=["autumn"]).accepts(outcome(1))


def test_secret_comes_from_settings_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="has no secret"):
        WebhookSink(WebhookConfig(url="http://127.0.0.1:9/x"))
    with pytest.raises(ConfigError, match="CRM_HOOK_SECRET is not set"):
        WebhookSink(WebhookConfig(url="http://127.0.0.1:9/x", secret_env="CRM_HOOK_SECRET"))
    monkeypatch.setenv("CRM_HOOK_SECRET", "abc")
    assert WebhookConfig(url="http://x/", secret_env="CRM_HOOK_SECRET").secret_bytes() == b"abc"
    with pytest.raises(ValueError, match="http"):
        WebhookConfig(url="ftp://x/")


async def test_signed_post_verified_by_the_receiver_and_filtered(receiver: Receiver, tmp_path: Path) -> None:
    cfg = WebhookConfig(
        url=f"http://127.0.0.1:{receiver.port}/hooks/outcall",
        name="crm",
        secret=SECRET.decode(),
        filters=WebhookFilters(grades=["A", "B"]),
    )
    sink = WebhookSink(cfg)
    store = SqliteStore(tmp_path / "o.db")
    hot, cold = outcome(1, "A"), outcome(2, "D")
    for o in (hot, cold):
        await store.save_outcome(o, sinks=[sink])
    assert [r.outcome_id for r in store.outbox_list_sync()] == [hot.outcome_id], "grade D filtered out"
    d = OutboxDeliverer(store, [sink])
    res = await d.drain()
    await d.close()
    assert res.delivered == 1
    [(headers, body)] = receiver.got
    assert receiver.verified == [True]
    assert headers[ID_HEADER.lower()] == hot.outcome_id
    assert json.loads(body) == hot.model_dump(mode="json")
    ts = int(headers[SIGNATURE_HEADER.lower()].split(",")[0][2:])
    assert abs(ts - time.time()) < 60
    # a replay of the captured request, later, is refused by the receiver's window
    assert not verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()], now=ts + 301)


async def test_5xx_retried_through_the_outbox_and_4xx_dead(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses = [503, 500, 200, 422]
    cfg = WebhookConfig(url=f"http://127.0.0.1:{receiver.port}/h", secret=SECRET.decode())
    sink = WebhookSink(cfg)
    store = SqliteStore(tmp_path / "o.db")
    o = outcome(1)
    await store.save_outcome(o, sinks=[sink])
    d = OutboxDeliverer(store, [sink], policy=RetryPolicy(base_s=0.0, jitter=0.0, max_attempts=5))
    results = [await d.drain_once() for _ in range(3)]
    assert [(r.failed, r.delivered) for r in results] == [(1, 0), (1, 0), (0, 1)]
    [row] = store.outbox_list_sync()
    assert row.state == "delivered" and row.attempts == 3
    assert len({h[ID_HEADER.lower()] for h, _ in receiver.got}) == 1, "same id on every retry"
    assert all(receiver.verified)
    bad = outcome(2)
    await store.save_outcome(bad, sinks=[sink])
    res = await d.drain_once()
    assert (res.failed, res.dead) == (1, 1)
    [dead] = store.outbox_list_sync(state="dead")
    assert "HTTP 422" in (dead.last_error or "")
    await d.close()


async def test_unreachable_endpoint_is_retryable(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now
    sink = WebhookSink(WebhookConfig(url=f"http://127.0.0.1:{port}/h", secret="x"))
    store = SqliteStore(tmp_path / "o.db")
    await store.save_outcome(outcome(1), sinks=[sink])
    d = OutboxDeliverer(store, [sink])
    res = await d.drain_once()
    await d.close()
    assert (res.failed, res.dead) == (1, 0)
    [row] = store.outbox_list_sync(state="pending")
    assert "ConnectError" in (row.last_error or "")


async def test_batching_endpoint_gets_signed_arrays(receiver: Receiver, tmp_path: Path) -> None:
    cfg = WebhookConfig(url=f"http://127.0.0.1:{receiver.port}/h", secret=SECRET.decode(), batch_size=3)
    sink = WebhookSink(cfg)
    store = SqliteStore(tmp_path / "o.db")
    sent = [outcome(i) for i in range(7)]
    for o in sent:
        await store.save_outcome(o, sinks=[sink])
    d = OutboxDeliverer(store, [sink])
    assert (await d.drain()).delivered == 7
    await d.close()
    assert [h["x-outcall-batch"] for h, _ in receiver.got] == ["3", "3", "1"]
    assert all(receiver.verified)
    got = [o["outcome_id"] for _, body in receiver.got for o in json.loads(body)]
    assert sorted(got) == sorted(o.outcome_id for o in sent)
