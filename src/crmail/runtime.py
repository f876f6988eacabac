"""Wiring for long-running processes: the API server and the sync service in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from datetime import timedelta
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from crmail.services import Services
from crmail.storage import accounts
from crmail.sync.dropbox import DropServer
from crmail.sync.inbound import SyncOptions
from crmail.sync.oauth import token_keeper
from crmail.sync.sending import smtp_settings_from_url
from crmail.sync.service import SyncService
from crmail.sync.webhooks import WebhookSender
from crmail.sync.worker import AccountWorker, WorkerOptions


def run_until_stopped(main: Coroutine[Any, Any, None]) -> int:
    """Run ``main`` in a new event loop until it ends or the process is told to stop.

    SIGTERM (what container and service managers send) stops it the way Ctrl-C does:
    the main task is cancelled, so every ``finally`` runs — the servers it started
    (a demo's Dovecot), the sync workers, the database. Python's default for SIGTERM
    is to die on the spot and leave them behind. Returns the exit code: 0 after a
    SIGTERM, 130 after Ctrl-C.
    """
    terminated = False

    async def stoppable() -> None:
        nonlocal terminated
        # asyncio.run's own SIGINT handler cancels the main task (a second one raises).
        interrupt = signal.getsignal(signal.SIGINT)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            nonlocal terminated
            terminated = True
            if callable(interrupt):
                interrupt(signal.SIGINT, frame)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_sigterm)
        await main

    try:
        asyncio.run(stoppable())
    except KeyboardInterrupt:
        return 0 if terminated else 130
    return 0


def worker_options(services: Services) -> WorkerOptions:
    s = services.settings
    return WorkerOptions(
        sync=SyncOptions(history_days=s.history_days, batch_size=s.batch_size),
        poll_interval=s.poll_interval,
        idle_timeout=s.idle_timeout,
        address_policy=s.mail_policy,
        tokens=token_keeper(s, services.db, services.box),
    )


def server_config(services: Services, app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=services.settings.host,
        port=services.settings.port,
        log_level="warning",
        # uvicorn's own default believes X-Forwarded-For from loopback: anything on this
        # host could then pick the client address the sign-in limits count. The app
        # believes only CRMAIL_TRUSTED_PROXIES (crmail.api.app).
        proxy_headers=False,
    )


async def serve(services: Services, *, ready: Callable[[str], None] | None = None) -> None:
    from crmail.api.app import create_app

    sync = SyncService(
        services.db,
        services.box,
        worker_options(services),
        scan_interval=services.settings.account_scan_interval,
        problems=services.problems,
        default_smtp=(
            smtp_settings_from_url(services.settings.default_smtp_url)
            if services.settings.default_smtp_url
            else None
        ),
    )
    services.sync = sync
    sync.start()
    webhooks = WebhookSender(
        services.db,
        services.box,
        allow_http_loopback=services.settings.webhook_allow_http_loopback,
        retention=(
            timedelta(days=services.settings.webhook_retention_days)
            if services.settings.webhook_retention_days > 0
            else None
        ),
    )
    webhooks.start()
    drops = None
    if services.settings.drop_smtp_port is not None:
        drops = DropServer(
            services.db,
            domain=services.settings.drop_domain,
            host=services.settings.drop_smtp_host,
            port=services.settings.drop_smtp_port,
        )
        await drops.start()
    app = create_app(services)
    app.state.webhooks = webhooks  # lets the API wake it after queueing a test ping
    server = uvicorn.Server(server_config(services, app))
    url = f"http://{services.settings.host}:{services.settings.port}"
    try:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if ready is not None and server.started:
            ready(url)
        await task
    finally:
        if drops is not None:
            await drops.stop()
        await webhooks.stop()
        await sync.stop()
        services.close()


async def sync_once(
    services: Services, account_id: int, *, progress: Callable[[str, int, int], None] | None = None
) -> None:
    worker = AccountWorker(services.db, services.box, account_id, worker_options(services))
    task = asyncio.create_task(worker.run_once())
    shown: dict[str, tuple[int, int]] = {}

    def report() -> None:
        if progress is None:
            return
        st = services.db.run(lambda s: accounts.status(s, account_id))
        for f in st.folders:
            now = (f.import_done, f.import_total)
            if shown.get(f.name) != now and f.import_total:
                shown[f.name] = now
                progress(f.name, *now)

    while not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 0.5)
        report()
    await task
