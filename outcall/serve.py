"""`outcall serve`: the HTTP API and the campaign scheduler in one process (one asyncio loop).

The scheduler looks for campaigns in state `running` (every `poll_s`, or at once when the API starts,
resumes or feeds one) and runs each through `run_campaign` with a dialer that places calls through the
gateway (`outcall.runtime.run_call`). Speech models and the SIP user agent load lazily, on the first
call a campaign dials, so /healthz answers within a second or two of start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from engine.campaign.scheduler import CampaignStatus, Claim, Dialer, Seat
from gateway.store.campaigns import CampaignStore
from gateway.store.reports import Reports
from outcall.dialplan_library import DialplanLibrary
from outcall.settings import Settings

if TYPE_CHECKING:
    from gateway.trunks import TrunkRouter
    from outcall.callerids import CallerIds
    from outcall.runtime import Speech

log = logging.getLogger("outcall.serve")

DialerFactory = Callable[[str], Awaitable[Dialer]]


class LiveRuntime:
    """Models + user agent + trunk router, built on first use and shared by every campaign."""

    def __init__(self, settings: Settings, library: DialplanLibrary) -> None:
        self.settings = settings
        self.library = library
        self._lock = asyncio.Lock()
        self._built: tuple[Any, Any, Any] | None = None
        self._caller_ids: CallerIds | None = None

    async def _build(self) -> tuple[Any, Any, Any]:
        async with self._lock:
            if self._built is None:
                from gateway.trunks import TrunkRouter
                from outcall.runtime import build_speech, start_ua

                log.info("first call: loading speech models and starting the SIP user agent")
                speech = await asyncio.to_thread(build_speech, self.settings)
                try:
                    ua = await start_ua(self.settings)
                except BaseException:
                    speech.close()
                    raise
                self._built = (speech, ua, TrunkRouter(ua, self.settings.all_trunks()))
            return self._built

    async def dialer(self, campaign: str, store: CampaignStore) -> Dialer:
        from outcall.runtime import campaign_dial

        cfg, _st = await asyncio.to_thread(store.get_campaign_sync, campaign)
        if cfg.pacing != "strict":  # run_call cannot report the answer moment: every call holds a seat
            cfg = cfg.model_copy(update={"pacing": "strict"})
            await asyncio.to_thread(store.update_campaign_sync, cfg)
        names = [cfg.dialplan, *cfg.variants]
        plans = {n: await asyncio.to_thread(self.library.get, n) for n in names}
        dirs = {n: (await asyncio.to_thread(self.library.resolve, n)).resolve().parent for n in names}

        async def line() -> tuple[Speech, TrunkRouter]:
            speech, _ua, router = await self._build()
            return speech, router

        if self._caller_ids is None:
            from outcall.callerids import CallerIds

            self._caller_ids = CallerIds(self.settings.all_trunks(), self.settings.caller_ids, store)
        return campaign_dial(
            cfg, plans, line, settings=self.settings, plan_dirs=dirs, caller_ids=self._caller_ids
        )

    async def close(self) -> None:
        if self._built is not None:
            speech, ua, _router = self._built
            await ua.close()
            speech.close()
            self._built = None


class Scheduler:
    """Runs every `running` campaign of the store; the API's SchedulerView."""

    def __init__(
        self,
        store: CampaignStore,
        make_dialer: DialerFactory,
        *,
        poll_s: float = 2.0,
        max_idle_s: float = 1.0,
        follow_s: float = 1.0,
    ) -> None:
        self.store = store
        self.reports = Reports(store)
        self.make_dialer = make_dialer
        self.poll_s = poll_s
        self.max_idle_s = max_idle_s
        self.follow_s = follow_s
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    # ---- SchedulerView (called from API worker threads too)
    def active_calls(self) -> int:
        return self._active

    def running(self) -> list[str]:
        return sorted(self.tasks)

    def wake(self) -> None:
        if self._loop is None:  # not running yet: the first poll happens at once anyway
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- loop
    def _counting(self, dial: Dialer) -> Dialer:
        async def counted(claim: Claim, seat: Seat) -> Any:
            self._active += 1
            try:
                return await dial(claim, seat)
            finally:
                self._active -= 1

        return counted

    async def _run_one(self, name: str) -> None:
        from outcall.campaign_cli import run_campaign

        try:
            dial = await self.make_dialer(name)
        except Exception:  # unknown dialplan, bad config: pause it so it is not retried every poll
            log.exception("campaign %s: cannot start dialing; pausing it", name)
            await asyncio.to_thread(self.store.set_status_sync, name, CampaignStatus.PAUSED)
            return
        try:
            stats = await run_campaign(
                self.store,
                name,
                self._counting(dial),
                max_idle_s=self.max_idle_s,
                follow_s=self.follow_s,
            )
            log.info(
                "campaign %s: scheduler ended (%s dialed, %s answered)", name, stats.dialed, stats.answered
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # one broken campaign must not stop the others or the API
            log.exception("campaign %s: scheduler failed; pausing it", name)
            with contextlib.suppress(Exception):
                _cfg, st = await asyncio.to_thread(self.store.get_campaign_sync, name)
                if st is CampaignStatus.RUNNING:
                    await asyncio.to_thread(self.store.set_status_sync, name, CampaignStatus.PAUSED)

    async def poll_once(self) -> list[str]:
        """Start a runner for each running campaign that has none. Returns the campaigns started."""
        for name, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[name]
        started = []
        for name in await asyncio.to_thread(self.reports.running_campaigns):
            if name not in self.tasks:
                self.tasks[name] = asyncio.get_running_loop().create_task(self._run_one(name))
                started.append(name)
        return started

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    started = await self.poll_once()
                    if started:
                        log.info("scheduling campaigns: %s", ", ".join(started))
                except Exception:
                    log.exception("scheduler poll failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()
        finally:
            for t in self.tasks.values():
                t.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            self.tasks.clear()


async def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from gateway.store import open_store
    from outcall.api.app import create_app
    from outcall.delivery import open_delivery

    store = open_store(settings.db, node=socket.gethostname())
    runtime = LiveRuntime(settings, DialplanLibrary(settings.dialplans_dir))
    # outcomes are enqueued for MQTT/webhooks in the attempt's transaction; MQTT control
    # (outcall/<campaign>/control: pause, resume, converted) applies to every campaign of the store
    delivery = (await open_delivery(settings, store, control_store=store)).start()

    async def make_dialer(name: str) -> Dialer:
        return await runtime.dialer(name, store)

    scheduler = Scheduler(store, make_dialer)
    app = create_app(settings, store, scheduler=scheduler)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(), log_config=None)
    server = uvicorn.Server(config)
    sched = asyncio.get_running_loop().create_task(scheduler.run())
    janitor = asyncio.get_running_loop().create_task(purge_recordings_forever(settings))
    try:
        await server.serve()
    finally:
        for t in (sched, janitor):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await runtime.close()
        await delivery.close()
        store.close()


async def purge_recordings_forever(settings: Settings, every_s: float = 6 * 3600) -> None:
    """Delete recordings past the retention period, at start and every few hours."""
    from pathlib import Path

    from gateway.recording import purge

    while True:
        try:
            n = await asyncio.to_thread(
                purge, Path(settings.recordings_dir), settings.recording_retention_days
            )
            if n:
                log.info("deleted %d recording(s) older than %g days", n, settings.recording_retention_days)
        except Exception:
            log.exception("purging recordings failed")
        await asyncio.sleep(every_s)
