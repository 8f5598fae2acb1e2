"""The web console in a real browser (Debian's chromium driven by Playwright), against the real app served
by uvicorn with the real scheduler, gateway and models: sign in, create a campaign, upload a list with a
bad row, start it so it dials a local SIP callee, watch the dashboard update, open the call and its
transcript with the recording, edit a dialplan with an error and fix it, a viewer's restricted view, and
the phone-width layout. Screenshots of each page go to $OUTCALL_ARTIFACTS (default: the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.leg import SipCallLeg
from gateway.sip.ua import UserAgent
from gateway.store.auth import AuthStore
from gateway.store.sqlite import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("OUTCALL_MODELS_DIR") or REPO / "var" / "models")
KPI_DIALED = (
    "() => { const k = document.querySelector('#kpis .kpi b'); return k && Number(k.textContent) >= 1; }"
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _listening_socket() -> socket.socket:
    """Bound and listening before the server runs: the browser's first request simply waits in the
    backlog until uvicorn accepts it (no polling for 'started')."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@pytest.fixture
def needs() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install chromium fonts-wqy-microhei)")
    if not (MODELS_DIR / "manifest.json").is_file():
        pytest.skip("speech models not installed (make models)")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    d = Path(os.environ.get("OUTCALL_ARTIFACTS") or tmp_path / "screenshots") / "console"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.asynccontextmanager
async def carrier() -> AsyncIterator[tuple[str, list[str]]]:
    """A SIP peer on loopback: the callee answers, listens until the robot speaks, says nothing, and
    hangs up a few seconds later (an answered call with a transcript)."""
    dialed: list[str] = []

    async def answer(leg: SipCallLeg) -> None:
        dialed.append(leg.info.target)
        await leg.answer()
        heard = 0
        async for frame in leg.frames():
            if int(np.abs(frame.astype(np.int32)).max()) > 1000:
                heard += 1
            if heard >= 150:  # ~3 s of the robot speaking
                break
        await leg.hangup()

    peer = UserAgent(on_incoming=answer)
    await peer.start()
    host, port = peer.local_addr
    try:
        yield f"{host}:{port}", dialed
    finally:
        await peer.close()


async def test_console_end_to_end(
    tmp_path: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch, needs: None
) -> None:
    import uvicorn
    from playwright.async_api import async_playwright

    from outcall.api.app import create_app
    from outcall.dialplan_library import DialplanLibrary
    from outcall.serve import LiveRuntime, Scheduler
    from outcall.settings import load_settings

    async with carrier() as (proxy, dialed):
        cfg = tmp_path / "outcall.toml"
        cfg.write_text(f'[[trunks]]\nname = "local"\nproxy = "{proxy}"\ncaller_ids = ["02162120001"]\n')
        monkeypatch.setenv("OUTCALL_CONFIG", str(cfg))
        settings = load_settings(
            db=str(tmp_path / "o.db"),
            models_dir=str(MODELS_DIR),
            dialplans_dir=str(tmp_path / "dialplans"),
            recordings_dir=str(tmp_path / "recordings"),
            sip_bind="127.0.0.1:0",
        )
        store = SqliteStore(settings.db)
        auth = AuthStore(store)
        tokens = {r: auth.create_token(r, f"{r}-web")[1] for r in ("admin", "manager", "designer", "viewer")}
        runtime = LiveRuntime(settings, DialplanLibrary(settings.dialplans_dir))

        async def make_dialer(name: str) -> Any:
            return await runtime.dialer(name, store)

        scheduler = Scheduler(store, make_dialer, poll_s=0.5)
        app = create_app(settings, store, scheduler=scheduler)
        sock = _listening_socket()
        port = int(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        sched = asyncio.get_running_loop().create_task(scheduler.run())
        base = f"http://127.0.0.1:{port}"
        errors: list[str] = []
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.set_default_timeout(20_000)

                # sign in (a wrong token is refused first)
                await page.goto(base + "/")
                await page.fill("#token", "nope")
                await page.click("button[type=submit]")
                await page.wait_for_selector("text=令牌无效或已撤销")
                errors.clear()  # the browser logs the refused request itself; from here on, none
                await page.fill("#token", tokens["manager"])
                await page.click("button[type=submit]")
                await page.wait_for_selector("h1:has-text('外呼任务')")
                await page.screenshot(path=str(artifacts / "01-campaigns.png"), full_page=True)

                # create a campaign (all-day window so the test dials at any hour)
                await page.fill("#c-name", "spring")
                await page.select_option("#c-plan", "trial-class-zh")
                await page.fill("#c-trunk", "local")
                await page.fill("#c-from", "00:00")
                await page.fill("#c-to", "23:59")
                await page.click("form.card button[type=submit]")
                await page.wait_for_selector("h1:has-text('spring')")

                # upload a list with a bad row: the good row imports, the bad one is reported by row
                csv = tmp_path / "list.csv"
                csv.write_text("手机号,姓名\n13800000002,张三\nabc,坏行\n", encoding="utf-8")
                await page.set_input_files("#u-file", str(csv))
                await page.wait_for_selector("text=预览（前 5 行）")
                await page.click("#u-file ~ button[type=submit]")
                await page.wait_for_selector("#import-summary")
                summary = await page.inner_text("#import-summary")
                assert "导入: 1" in summary and "无效: 1" in summary, summary
                assert "3" in await page.inner_text("#import-errors")  # row 3 named
                await page.screenshot(path=str(artifacts / "02-upload-report.png"), full_page=True)

                # start: the scheduler dials the callee over SIP; the dashboard updates live
                await page.click("button:has-text('开始')")
                await page.wait_for_selector("#status:has-text('running')")
                await page.wait_for_function(KPI_DIALED, timeout=180_000)
                await page.wait_for_selector("#caller-health td:has-text('02162120001')")  # the pool's health
                await page.screenshot(path=str(artifacts / "03-dashboard.png"), full_page=True)
                assert dialed, "the callee was never dialed"

                # the call page: transcript and recording player
                await page.goto(base + "/#/calls?campaign=spring")
                await page.wait_for_selector("#calls tbody a", timeout=60_000)
                await page.click("#calls tbody a")
                await page.wait_for_selector("#transcript .turn")
                text = await page.inner_text("#transcript")
                assert "智能助理" in text, text  # the AI disclosure was spoken first
                await page.screenshot(path=str(artifacts / "04-call.png"), full_page=True)

                # an unmatched reply in the designers' inbox (as a call would have stored it)
                from datetime import UTC, datetime

                from engine.dispositions import Disposition
                from engine.outcome import CallOutcome

                now = datetime.now(UTC)
                store.save_outcome_sync(
                    CallOutcome(
                        call_id="inbox-1",
                        to="+8613800000009",
                        dialplan="trial-class-zh",
                        disposition=Disposition.ANSWERED,
                        started_at=now,
                        answered_at=now,
                        ended_at=now,
                        variables={
                            "no_match": [{"node": "detail", "text": "校区离地铁站近吗", "intent": "other"}]
                        },
                    )
                )

                # dialplan editor as a designer: an error is marked at its line, then fixed and saved
                await page.evaluate("sessionStorage.clear()")
                await page.goto(base + "/#/login")
                await page.fill("#token", tokens["designer"])
                await page.click("button[type=submit]")
                await page.wait_for_selector("#who:has-text('designer')")
                await page.goto(base + "/#/dialplans/trial-class-zh")
                try:
                    await page.wait_for_selector("#validity.ok")
                except Exception as e:
                    await page.screenshot(path=str(artifacts / "failed-editor.png"), full_page=True)
                    raise AssertionError(f"{(await page.inner_text('main'))[:800]} {errors}") from e
                await page.wait_for_selector("#graph svg rect")  # the tree drawn from the validated plan
                assert await page.locator("#graph svg rect").count() >= 5
                await page.wait_for_selector("#funnel svg")  # the campaign's call reached the greeting
                assert "greet" in await page.inner_text("#funnel")
                yaml_text = await page.input_value("#yaml")
                broken = yaml_text.replace("default: refused", "default: nowhere", 1)
                assert broken != yaml_text
                await page.fill("#yaml", broken)
                await page.wait_for_selector("#validity.error")
                problems = await page.inner_text("#problems")
                assert "nowhere" in problems, problems
                line = yaml_text.split("default: refused")[0].count("\n") + 1
                assert f"{line}:" in problems, (line, problems)
                assert await page.locator(".gutter .bad").count() >= 1
                assert await page.is_disabled("button:has-text('保存')")
                await page.screenshot(path=str(artifacts / "05-dialplan-error.png"), full_page=True)
                await page.fill("#yaml", yaml_text)
                await page.wait_for_selector("#validity.ok")
                # one click turns the unmatched reply into an example of a declared intent
                await page.wait_for_selector("#inbox li:has-text('校区离地铁站近吗')")
                await page.click("#inbox li button")
                assert "校区离地铁站近吗]" in await page.input_value("#yaml")
                await page.wait_for_selector("#validity.ok")
                await page.click("button:has-text('保存')")
                await page.wait_for_selector("#toast:has-text('已保存为新版本')")
                # the chat simulator runs the real runner and classifier
                await page.fill("#chat-input", "多少钱")
                await page.click("#chat ~ form button[type=submit]")
                await page.wait_for_selector("#chat .msg.callee")
                await page.screenshot(path=str(artifacts / "06-dialplan-chat.png"), full_page=True)

                # a viewer: numbers masked, no campaign actions, no admin page
                await page.evaluate("sessionStorage.clear()")
                await page.goto(base + "/#/login")
                await page.fill("#token", tokens["viewer"])
                await page.click("button[type=submit]")
                await page.wait_for_selector("#who:has-text('viewer')")
                await page.goto(base + "/#/calls")
                await page.wait_for_selector("#calls tbody a")
                assert "****" in await page.inner_text("#calls")
                assert await page.locator("nav a[href='#/admin']").count() == 0
                await page.goto(base + "/#/campaigns")
                await page.wait_for_selector("h1:has-text('外呼任务')")
                assert await page.locator("#c-name").count() == 0

                # phone width, English
                await page.set_viewport_size({"width": 390, "height": 800})
                await page.click("#lang")
                await page.wait_for_selector("h1:has-text('Campaigns')")
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, width
                await page.screenshot(path=str(artifacts / "07-phone-en.png"), full_page=True)
                await browser.close()
            assert errors == [], errors
        finally:
            server.should_exit = True
            sched.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sched
            await serving
            await runtime.close()
            store.close()
            sock.close()
