"""Outcome delivery benchmark: outcomes/s through the outbox to MQTT (a real mosquitto started here) and a
signed webhook (a loopback asyncio HTTP server in a separate "CRM" process that verifies every signature
and also subscribes to the MQTT topic), with lost and duplicated ids counted from the CRM's side.

    .venv/bin/python bench/outcomes.py --json [--n 20000]

A producer thread saves outcomes one transaction each (outcome + 2 outbox rows), as calls end; the
deliverer drains concurrently. Rate = outcomes fully delivered to both sinks per second, from the first
save to the last acknowledgement. Target ≥ 1000/s sustained, 0 lost, 0 duplicated. Prints one JSON object
and writes bench/results/outcomes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.delivery import OutboxDeliverer, Sink
from gateway.mqtt import MqttLink, MqttSink, MqttTarget
from gateway.store.outbox import RetryPolicy
from gateway.store.sqlite import SqliteStore
from gateway.webhook import WebhookConfig, WebhookSink, verify_signature

SECRET = "bench-secret"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ CRM process
def crm_main(http_port: int, mqtt_port: int, n: int, ready: Any, conn: Any) -> None:
    asyncio.run(_crm(http_port, mqtt_port, n, ready, conn))


async def _crm(http_port: int, mqtt_port: int, n: int, ready: Any, conn: Any) -> None:
    http_ids: list[str] = []
    mqtt_ids: list[str] = []
    bad_sig = 0
    done = asyncio.Event()
    secret = SECRET.encode()

    def check() -> None:
        if len(set(http_ids)) >= n and len(set(mqtt_ids)) >= n:
            done.set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal bad_sig
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k:
                        headers[k.lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if verify_signature(secret, body, headers.get("x-outcall-signature", "")):
                    if "x-outcall-batch" in headers:
                        http_ids.extend(o["outcome_id"] for o in json.loads(body))
                    else:
                        http_ids.append(headers["x-outcall-id"])
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    bad_sig += 1
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                check()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", http_port, backlog=512)
    async with aiomqtt.Client(
        "127.0.0.1", mqtt_port, identifier="bench-crm", max_inflight_messages=1000
    ) as c:
        await c.subscribe("outcall/+/outcomes", qos=1)
        ready.set()

        async def consume() -> None:
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                mqtt_ids.append(json.loads(msg.payload)["outcome_id"])
                check()

        task = asyncio.get_running_loop().create_task(consume())
        try:
            await asyncio.wait_for(done.wait(), 600)
        except TimeoutError:
            pass
        t_done = time.time()
        task.cancel()
    server.close()
    conn.send(
        {
            "http_ids": http_ids,
            "mqtt_ids": mqtt_ids,
            "bad_signatures": bad_sig,
            "t_done": t_done,
        }
    )


# ------------------------------------------------------------------------------------------ our side
def outcome(i: int) -> CallOutcome:
    return CallOutcome(
        call_id=f"bench-{i}",
        campaign="bench" if i % 4 else None,
        to=f"+86138{i:08d}",
        disposition=Disposition.ANSWERED if i % 3 else Disposition.NO_ANSWER,
        grade="B",
        started_at=T0,
        answered_at=T0,
        ended_at=T0,
        variables={"callback": "明天上午"},
        tags=["意向"],
    )


async def run(n: int, workdir: Path, batch: int) -> dict[str, Any]:
    mosq = shutil.which("mosquitto")
    if mosq is None:
        raise SystemExit("mosquitto not installed (apt-get install --no-install-recommends mosquitto)")
    mqtt_port, http_port = free_port(), free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nmax_inflight_messages 1000\nmax_queued_messages 0\n"
    )
    broker = await asyncio.create_subprocess_exec(
        mosq, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    parent, child = ctx.Pipe()
    crm = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", mqtt_port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        crm = ctx.Process(target=crm_main, args=(http_port, mqtt_port, n, ready, child), daemon=True)
        crm.start()
        if not await asyncio.to_thread(ready.wait, 30):
            raise SystemExit("the CRM process did not start")

        store = SqliteStore(workdir / "bench.db")
        link = MqttLink(MqttTarget("127.0.0.1", mqtt_port), max_inflight=1000).start()
        await link.wait_connected(10)
        mqtt = MqttSink(link)
        hook = WebhookSink(
            WebhookConfig(
                url=f"http://127.0.0.1:{http_port}/hook", name="crm", secret=SECRET, batch_size=batch
            )
        )
        sinks: list[Sink] = [mqtt, hook]
        store.outbox_sinks = sinks
        d = OutboxDeliverer(store, sinks, policy=RetryPolicy(base_s=0.2, max_s=2.0), batch=1000)
        outcomes = [outcome(i) for i in range(n)]

        produced = threading.Event()
        t_saved = [0.0]

        def produce() -> None:
            for o in outcomes:
                store.save_outcome_sync(o)  # one transaction per outcome, as calls end
            t_saved[0] = time.time()
            produced.set()

        t0 = time.time()
        th = threading.Thread(target=produce)
        th.start()
        runner = asyncio.get_running_loop().create_task(d.run(poll_s=0.01))
        got = await asyncio.to_thread(parent.recv)
        t_crm = float(got["t_done"])
        while store.outbox_counts_sync()["pending"]:  # the last settle may trail the CRM's receipt
            await d.drain()
        t_end = time.time()
        th.join()
        d.stop()
        await runner
        await d.close()
        counts = store.outbox_counts_sync()
    finally:
        if crm is not None:
            crm.join(5)
            if crm.is_alive():
                crm.kill()
        broker.terminate()
        await broker.wait()
    want = {o.outcome_id for o in outcomes}
    res: dict[str, Any] = {
        "n_outcomes": n,
        "sinks": ["mqtt (QoS 1, mosquitto)", "webhook (signed POST, loopback)"],
        "webhook_batch_size": batch,
        "elapsed_s": round(t_end - t0, 3),
        "outcomes_per_s": round(n / (max(t_crm, t_end) - t0), 1),
        "deliveries_per_s": round(2 * n / (max(t_crm, t_end) - t0), 1),
        "save_only_per_s": round(n / (t_saved[0] - t0), 1),
        "outbox": counts,
        "mqtt_lost": len(want - set(got["mqtt_ids"])),
        "mqtt_duplicated": len(got["mqtt_ids"]) - len(set(got["mqtt_ids"])),
        "webhook_lost": len(want - set(got["http_ids"])),
        "webhook_duplicated": len(got["http_ids"]) - len(set(got["http_ids"])),
        "webhook_bad_signatures": got["bad_signatures"],
        "failed_attempts": d.totals.failed,
        "target_per_s": 1000,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    res["ok"] = (
        res["outcomes_per_s"] >= 1000
        and res["mqtt_lost"] == res["webhook_lost"] == 0
        and res["mqtt_duplicated"] == res["webhook_duplicated"] == 0
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100, help="webhook batch_size (1: one POST per outcome)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="outcall-bench-") as tmp:
        result = asyncio.run(run(args.n, Path(tmp), args.batch))
    name = "outcomes.json" if args.batch == 100 else f"outcomes-batch{args.batch}.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
