"""The sync service: one worker per active account, started and stopped as accounts change."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent, Backoff
from crmail.errors import CrmailError, ProviderError, StorageError
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
        problems: dict[int, CrmailError] | None = None,
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
        #: a worker that died is started again after a backoff, not at the next scan
        self._crashes: dict[int, Backoff] = {}
        self._restart_at: dict[int, float] = {}
        self._recording: set[asyncio.Task[None]] = set()
        #: what each account's worker is retrying after (Services.problems)
        self.problems = {} if problems is None else problems

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
        self._runner = loop.create_task(
            _keep_going("sync supervisor", self._supervise, self.options.backoff()),
            name="sync-supervisor",
        )
        self._runner.add_done_callback(_report_death)
        if self.default_smtp is not None:
            self._default_task = loop.create_task(
                _keep_going("default sender", self._default_sender, self.options.backoff()),
                name="default-sender",
            )
            self._default_task.add_done_callback(_report_death)

    async def _default_sender(self) -> None:
        """Bulk and workflow email that goes out through the default provider."""
        assert self.default_smtp is not None
        sending = Sending(self.db, self.default_smtp)

        async def run(action: outbox.Action) -> None:
            try:
                await sending.run(action)
            except StorageError:
                raise  # the action stays queued; the sender starts again after a backoff
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
                if account_id not in wanted:
                    self.problems.pop(account_id, None)
                self._versions.pop(account_id, None)
        if stopping:
            # Let cancelled workers close their sessions first: an old session must not
            # record a late event (say, its password refused) over the new one's.
            await asyncio.wait(stopping, timeout=10)
        now = asyncio.get_running_loop().time()
        for account_id in sorted(set(wanted) - set(self._tasks)):
            if self._restart_at.get(account_id, now) > now:
                continue  # died recently: wait out its backoff
            worker = AccountWorker(
                self.db, self.box, account_id, self.options, problems=self.problems
            )
            self._workers[account_id] = worker
            self._versions[account_id] = wanted[account_id]
            task = asyncio.create_task(worker.run(), name=f"account-{account_id}")
            task.add_done_callback(functools.partial(self._worker_ended, account_id, worker))
            self._tasks[account_id] = task
            log.info("sync started for account %s", account_id)

    def _worker_ended(
        self, account_id: int, worker: AccountWorker, task: asyncio.Task[None]
    ) -> None:
        """A worker that died is never silent: its exception is read, logged, shown on the
        account's status, and the worker is started again after a backoff."""
        if task.cancelled() or task.exception() is None:
            return  # stopped, or paused on refused credentials (recorded by the worker)
        exc = task.exception()
        assert exc is not None
        crashes = self._crashes.get(account_id, self.options.backoff())
        if worker.healthy_rounds:
            crashes = crashes.succeeded()  # it had been working: not a crash loop
        crashes = crashes.failed()
        self._crashes[account_id] = crashes
        delay = crashes.delay(random.uniform(0.5, 1.0))
        loop = task.get_loop()
        self._restart_at[account_id] = loop.time() + delay
        self.problems[account_id] = _death_reason(exc)
        log.error(
            "sync worker of account %s died; restarting in %.1fs",
            account_id,
            delay,
            exc_info=exc,
        )
        if not loop.is_closed():
            recording = loop.create_task(self._record_death(account_id, exc))
            self._recording.add(recording)
            recording.add_done_callback(self._recording.discard)
            loop.call_later(delay, self._wake.set)

    async def _record_death(self, account_id: int, exc: BaseException) -> None:
        error = _death_reason(exc)
        event = (
            AccountEvent.STORAGE_FAILED if isinstance(error, StorageError) else AccountEvent.CRASHED
        )
        try:
            await self.db.write(lambda s: accounts.try_event(s, account_id, event, error))
        except StorageError as failed:
            log.error("account %s: could not record the worker's death: %s", account_id, failed)


async def _keep_going(name: str, body: Callable[[], Awaitable[None]], backoff: Backoff) -> None:
    """Run a service loop until cancelled; a failure (the database refusing a write) is
    logged and the loop starts again after a backoff, instead of ending silently."""
    started = 0.0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await body()
            return
        except Exception:
            if loop.time() - started > backoff.cap:
                backoff = backoff.succeeded()  # it ran well for a while: not a loop
            backoff = backoff.failed()
            delay = backoff.delay(random.uniform(0.5, 1.0))
            log.exception("%s failed; starting again in %.1fs", name, delay)
            await asyncio.sleep(delay)


def _death_reason(exc: BaseException) -> CrmailError:
    if isinstance(exc, CrmailError):
        return exc
    return CrmailError(
        f"the sync worker stopped on an internal error ({type(exc).__name__}: {exc})",
        hint="it restarts by itself; the log has the details",
    )


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())
