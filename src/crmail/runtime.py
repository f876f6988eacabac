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

from crmail.api_processes import listening_socket
from crmail.providers import graph
from crmail.providers.gmail import DEFAULT_BASE_URL
from crmail.services import Services
from crmail.storage import accounts
from crmail.storage.db import Database
from crmail.sync.calendar import CalendarSync
from crmail.sync.calendar import options_for as calendar_options_for
from crmail.sync.dropbox import DropServer
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.graph.options import GraphOptions
from crmail.sync.inbound import SyncOptions
from crmail.sync.leases import LeaseKeeper, one_lease
from crmail.sync.oauth import token_keeper
from crmail.sync.sending import smtp_settings_from_url
from crmail.sync.service import SyncService
from crmail.sync.wakeups import Broadcast, PgWakeups
from crmail.sync.webhooks import WebhookSender
from crmail.sync.worker import WorkerOptions
from crmail.sync.workers import worker_for


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
        gmail=GmailOptions(
            base_url=s.gmail_api_url or DEFAULT_BASE_URL, push_topic=s.gmail_push_topic or None
        ),
        graph=GraphOptions(
            base_url=s.graph_api_url or graph.DEFAULT_BASE_URL,
            # Graph must reach it: https in production (docs/providers/microsoft.md "Push")
            notification_url=f"{s.public_url}/api/push/graph" if s.public_url else None,
        ),
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


#: what ``crmail run --role`` starts
ROLES = ("all", "api", "sync")


async def serve(
    services: Services,
    *,
    ready: Callable[[str], None] | None = None,
    role: str = "all",
    reuse_port: bool = False,
) -> None:
    """Run the API/web app ("api"), the sync service with its senders ("sync"), or both.

    On PostgreSQL several processes may run, in any mix of roles: accounts are shared
    out by leases, and wake-ups travel between processes by LISTEN/NOTIFY.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    wakeups = None if services.db.is_sqlite else PgWakeups(services.db)
    sync = None
    listening = None
    if role == "api":
        services.sync = Broadcast(wakeups)
    else:
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
            keeper=LeaseKeeper(
                services.db,
                ttl=services.settings.lease_ttl,
                max_accounts=services.settings.max_accounts_per_process,
            ),
            publish=wakeups.publish if wakeups is not None else None,
        )
        services.sync = sync
        sync.start()
        if wakeups is not None:
            listening = asyncio.create_task(wakeups.listen(sync.on_notice), name="wake-listener")
    try:
        if sync is None:
            await _serve_api(services, None, ready, reuse_port=reuse_port)
        else:
            await _serve_sync(services, sync, ready, api=role == "all", reuse_port=reuse_port)
    finally:
        if listening is not None:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        if wakeups is not None:
            wakeups.close()
        services.close()


async def _serve_sync(
    services: Services,
    sync: SyncService,
    ready: Callable[[str], None] | None,
    *,
    api: bool,
    reuse_port: bool = False,
) -> None:
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
    # Calendar accounts (CalDAV, Google) sync in their own loop beside the mail workers.
    calendars = CalendarSync(
        services.db,
        services.box,
        calendar_options_for(services.settings, services.db, services.box),
    )
    calendars.start()
    drops = None
    if services.settings.drop_smtp_port is not None:
        drops = DropServer(
            services.db,
            domain=services.settings.drop_domain,
            host=services.settings.drop_smtp_host,
            port=services.settings.drop_smtp_port,
        )
        await drops.start()
    try:
        if api:
            await _serve_api(services, webhooks, ready, reuse_port=reuse_port)
        else:
            if ready is not None:
                ready("sync only")
            await asyncio.Event().wait()  # until cancelled (SIGTERM, Ctrl-C)
    finally:
        if drops is not None:
            await drops.stop()
        await webhooks.stop()
        await calendars.stop()
        await sync.stop()


async def _serve_api(
    services: Services,
    webhooks: WebhookSender | None,
    ready: Callable[[str], None] | None,
    *,
    reuse_port: bool = False,
) -> None:
    from crmail.api.app import create_app

    app = create_app(services)
    app.state.webhooks = webhooks  # lets the API wake it after queueing a test ping
    server = uvicorn.Server(server_config(services, app))
    url = f"http://{services.settings.host}:{services.settings.port}"
    # Several API processes share the port (crmail.api_processes).
    sockets = (
        [listening_socket(services.settings.host, services.settings.port)] if reuse_port else None
    )
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if ready is not None and server.started:
        ready(url)
    await task


async def sync_once(
    services: Services,
    account_id: int,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    waiting: Callable[[str], None] | None = None,
) -> None:
    """Import and catch up one account once (``crmail sync``).

    On PostgreSQL it holds the account's lease meanwhile, so it never syncs beside the
    ``crmail run`` process that owns the account (refused with :class:`AccountBusy`, or
    with ``waiting``, told and waited for); on SQLite the file lock
    (:mod:`crmail.storage.single`) already keeps it alone.
    """
    if services.db.is_sqlite:
        await _sync_once(services, services.db, account_id, progress)
        return
    ttl = services.settings.lease_ttl
    async with one_lease(services.db, account_id, ttl=ttl, waiting=waiting) as db:
        await _sync_once(services, db, account_id, progress)
    # The sync processes claim it now rather than at their next look.
    wakeups = PgWakeups(services.db)
    wakeups.publish("accounts")
    wakeups.close()


async def _sync_once(
    services: Services,
    db: Database,
    account_id: int,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    worker = await worker_for(db, services.box, account_id, worker_options(services))
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
