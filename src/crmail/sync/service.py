"""The sync service: one worker per active account, started and stopped as accounts change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from crmail.crypto import SecretBox
from crmail.errors import CrmailError, ProviderError
from crmail.providers.smtp import SmtpSettings
from crmail.storage import accounts, actions, outbox
from crmail.storage.db import Database
from crmail.sync.drain import drain_outbox
from crmail.sync.sending import Sending
from crmail.sync.worker import AccountWorker, WorkerOptions

log = logging.getLogger(__name__)

#: seconds a shutdown waits for workers to wind down
STOP_TIMEOUT = 10.0


class SyncService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        options: WorkerOptions,
        *,
        scan_interval: float = 2.0,
        default_smtp: SmtpSettings | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.options = options
        self.scan_interval = scan_interval
        self.default_smtp = default_smtp
        self._default_wake = asyncio.Event()
        self._default_task: asyncio.Task[None] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._workers: dict[int, AccountWorker] = {}
        #: the connection fingerprint each running worker was started with
        self._versions: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def accounts_changed(self) -> None:
        """Safe to call from any thread (API handlers run in a thread pool)."""
        loop = self._runner.get_loop() if self._runner else None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        """The CRM queued changes for these accounts: wake their outbox drains (any thread)."""
        loop = self._runner.get_loop() if self._runner else None
        if loop is None or loop.is_closed():
            return
        if default_provider:
            loop.call_soon_threadsafe(self._default_wake.set)
        for account_id in account_ids:
            worker = self._workers.get(account_id)
            if worker is not None:
                loop.call_soon_threadsafe(worker.wake)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._runner = loop.create_task(self._supervise(), name="sync-supervisor")
        if self.default_smtp is not None:
            self._default_task = loop.create_task(self._default_sender(), name="default-sender")

    async def _default_sender(self) -> None:
        """Bulk and workflow email that goes out through the default provider."""
        assert self.default_smtp is not None
        sending = Sending(self.db, self.default_smtp)

        async def run(action: outbox.Action) -> None:
            try:
                await sending.run(action)
            except CrmailError as exc:
                retryable = isinstance(exc, ProviderError) and exc.retryable
                message = exc.message
                await self.db.write(
                    lambda s: outbox.fail(s, action.id, message, retryable=retryable)
                )

        await drain_outbox(self.db, None, run, self._default_wake)

    async def stop(self) -> None:
        tasks = [
            t for t in (self._runner, self._default_task, *self._tasks.values()) if t is not None
        ]
        for t in tasks:
            t.cancel()
        if tasks:
            # Bounded: a worker stuck in a server call must not hold up a shutdown.
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for t in pending:
                log.warning("%s did not stop within %ss", t.get_name(), STOP_TIMEOUT)
        self._tasks.clear()
        self._workers.clear()

    @property
    def running(self) -> set[int]:
        return {i for i, t in self._tasks.items() if not t.done()}

    async def _supervise(self) -> None:
        while True:
            await self.reconcile()
            await self.db.write(actions.wake_snoozed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.scan_interval)
            self._wake.clear()

    async def reconcile(self) -> None:
        """Start workers for active accounts; stop those of accounts no longer active.

        A worker whose account changed connection (reconnect with a new password, a
        new address or server) is replaced: it read its settings when it started.
        """
        wanted = await self.db.read(accounts.active_connections)
        stopping = []
        for account_id, task in list(self._tasks.items()):
            if (
                account_id not in wanted
                or task.done()
                or self._versions.get(account_id) != wanted[account_id]
            ):
                task.cancel()
                stopping.append(task)
                del self._tasks[account_id]
                self._workers.pop(account_id, None)
                self._versions.pop(account_id, None)
        if stopping:
            # Let cancelled workers close their sessions first: an old session must not
            # record a late event (say, its password refused) over the new one's.
            await asyncio.wait(stopping, timeout=10)
        for account_id in sorted(set(wanted) - set(self._tasks)):
            worker = AccountWorker(self.db, self.box, account_id, self.options)
            self._workers[account_id] = worker
            self._versions[account_id] = wanted[account_id]
            self._tasks[account_id] = asyncio.create_task(
                worker.run(), name=f"account-{account_id}"
            )
            log.info("sync started for account %s", account_id)
