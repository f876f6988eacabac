"""The sync service: one worker per account this process leases, started and stopped as
accounts and leases change.

Several processes may run it on one PostgreSQL: each account is synced by the process
holding its lease (:mod:`crmail.sync.leases`), and the worker writes through a fenced
database that refuses every write once the lease is gone. The default sending
provider's queue is leased the same way (as account 0), so one process drains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent, Backoff
from crmail.errors import CrmailError, ProviderError, StorageError
from crmail.providers.smtp import SmtpSettings
from crmail.storage import accounts, actions, outbox
from crmail.storage.db import Database
from crmail.storage.leases import DEFAULT_SENDER, LeaseLost
from crmail.sync.drain import drain_outbox
from crmail.sync.leases import LeaseKeeper, Renewal
from crmail.sync.sending import Sending
from crmail.sync.wakeups import parse_wake_message, wake_message
from crmail.sync.worker import AccountWorker, WorkerOptions
from crmail.sync.workers import worker_for

log = logging.getLogger(__name__)

#: seconds a shutdown waits for workers to wind down
STOP_TIMEOUT = 10.0

#: a scan nobody asked for reloads every account's connection at most this often; in
#: between it compares a one-row stamp (:func:`accounts.active_version`): loading and
#: fingerprinting a thousand accounts every scan cost a sixth of a core
RELOAD_EVERY = 30.0

#: the shortest wait for another process's lease to run out (one the last claim saw as
#: about to expire may have expired while this process was busy: a claim, not a spin)
EXPIRY_PAUSE = 0.05


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
        keeper: LeaseKeeper | None = None,
        publish: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.keeper = keeper or LeaseKeeper(db)
        #: tells the other processes (PostgreSQL NOTIFY): see :mod:`crmail.sync.wakeups`
        self.publish = publish
        self._leasing: list[asyncio.Task[None]] = []
        #: the accounts (and default provider) someone should sync, from the last scan
        self._wanted: dict[int, str] = {}
        self.box = box
        self.options = options
        self.scan_interval = scan_interval
        self.default_smtp = default_smtp
        self._default_wake = asyncio.Event()
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
        #: the stamp of the accounts as last loaded, and when (loop time)
        self._loaded: tuple[tuple[int, int | None], float] | None = None

    def accounts_changed(self) -> None:
        """Safe to call from any thread (API handlers run in a thread pool)."""
        if self.publish is not None:
            self.publish("accounts")
        self.wake_supervisor()

    def wake_supervisor(self) -> None:
        loop = self._runner.get_loop() if self._runner else None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        """The CRM queued changes for these accounts: wake their outbox drains (any thread),
        here and, through ``publish``, in the process that owns each."""
        account_ids = list(account_ids)
        if self.publish is not None:
            self.publish(wake_message(account_ids, default_provider))
        self.wake_outboxes(account_ids, default_provider)

    def on_notice(self, payload: str) -> None:
        """Another process's wake-up (see :func:`wake_message`)."""
        if payload == "accounts":
            self.wake_supervisor()
            return
        ids, default = parse_wake_message(payload)
        self.wake_outboxes(ids, default)

    def wake_outboxes(
        self, account_ids: Iterable[int] | None, default_provider: bool = False
    ) -> None:
        """Wake the drains of these accounts (None: all) that run in this process."""
        loop = self._runner.get_loop() if self._runner else None
        if loop is None or loop.is_closed():
            return
        if default_provider:
            loop.call_soon_threadsafe(self._default_wake.set)
        for account_id in list(self._workers) if account_ids is None else account_ids:
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
        for name, body in (
            ("lease-heartbeat", self._heartbeat),
            ("lease-watchdog", self._watchdog),
        ):
            task = loop.create_task(body(), name=name)
            task.add_done_callback(_report_death)
            self._leasing.append(task)

    async def _default_sender(self, db: Database) -> None:
        """Bulk and workflow email that goes out through the default provider."""
        assert self.default_smtp is not None
        sending = Sending(db, self.default_smtp)

        async def run(action: outbox.Action) -> None:
            try:
                await sending.run(action)
            except StorageError:
                raise  # the action stays queued; the sender starts again after a backoff
            except CrmailError as exc:
                retryable = isinstance(exc, ProviderError) and exc.retryable
                message = exc.message
                await db.write(lambda s: outbox.fail(s, action.id, message, retryable=retryable))

        await drain_outbox(db, None, run, self._default_wake)

    async def stop(self) -> None:
        """Stop every worker, then give every lease back at once: the other processes
        take the accounts over within a scan instead of waiting for the leases to expire."""
        tasks = [t for t in (self._runner, *self._leasing, *self._tasks.values()) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            # Bounded: a worker stuck in a server call must not hold up a shutdown.
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for t in pending:
                log.warning("%s did not stop within %ss", t.get_name(), STOP_TIMEOUT)
        self._tasks.clear()
        self._workers.clear()
        self._leasing.clear()
        try:
            await self.keeper.leave()
            if self.publish is not None:
                self.publish("accounts")  # the others claim them now, not at their next scan
        except CrmailError as exc:
            log.warning("could not release the account leases (they expire by themselves): %s", exc)

    @property
    def running(self) -> set[int]:
        return {i for i, t in self._tasks.items() if not t.done()}

    async def _supervise(self) -> None:
        woken = True
        while True:
            await self.reconcile(reload=woken)
            # Atomic: of several processes running it together, each item wakes once.
            await self.db.write(actions.wake_snoozed)
            wait = self.scan_interval
            if self.keeper.expiry_at is not None:
                # Claim the moment another process's lease runs out: a dead one's accounts
                # are taken over then, not at the next scan.
                left = self.keeper.expiry_at - time.monotonic()
                wait = min(wait, max(EXPIRY_PAUSE, left))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            woken = self._wake.is_set()
            self._wake.clear()

    async def _heartbeat(self) -> None:
        """Renew the leases; stop the workers of those lost, hand over those beyond this
        process's fair share (stopped first, then released).

        The renewals are timed and committed on a thread of their own: at a start-up
        storm this loop ran seconds behind, renewals came late, and leases were given up
        and taken back. Only what follows a renewal waits for the loop."""
        loop = asyncio.get_running_loop()
        renewals: asyncio.Queue[Renewal | CrmailError] = asyncio.Queue()

        def deliver(outcome: Renewal | CrmailError) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to tell
                loop.call_soon_threadsafe(renewals.put_nowait, outcome)

        halt = self.keeper.renew_on_schedule(deliver)
        try:
            while True:
                outcome = await renewals.get()
                if isinstance(outcome, CrmailError):
                    log.warning("could not renew the account leases: %s", outcome)
                    continue  # the watchdog stops the workers before the leases expire
                await self._settle(outcome)
        finally:
            await asyncio.to_thread(halt)

    async def _settle(self, renewal: Renewal) -> None:
        lost, surplus = self.keeper.settle(renewal)
        if lost:
            log.warning("lost the leases of accounts %s: their sync stops here", lost)
            self._drop(lost)
        if surplus:
            await self._stop_and_wait(self._drop(surplus))
            await self.keeper.release(surplus)
        if lost or surplus:
            self._wake.set()

    async def _watchdog(self) -> None:
        """A lease not renewed in time (the database unreachable, the process paused)
        stops its worker before the lease can expire and another process start one."""
        while True:
            await asyncio.sleep(min(1.0, self.keeper.margin / 4))
            gone = self.keeper.expired_locally()
            if gone:
                log.warning("the leases of accounts %s could not be renewed in time", gone)
                self._drop(gone)

    def _drop(self, account_ids: Iterable[int]) -> list[asyncio.Task[None]]:
        """Cancel these accounts' workers; returns their tasks, still winding down."""
        tasks = []
        for account_id in account_ids:
            task = self._tasks.pop(account_id, None)
            self._workers.pop(account_id, None)
            self._versions.pop(account_id, None)
            if task is not None:
                task.cancel()
                tasks.append(task)
        return tasks

    @staticmethod
    async def _stop_and_wait(tasks: list[asyncio.Task[None]]) -> None:
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)

    async def reconcile(self, *, reload: bool = True) -> None:
        """Start workers for active accounts; stop those of accounts no longer active.

        A worker whose account changed connection (reconnect with a new password, a
        new address or server) is replaced: it read its settings when it started.
        ``reload=False`` (a scan nobody asked for): the accounts are reloaded only when
        their stamp changed or the last load is :data:`RELOAD_EVERY` old.
        """
        wanted = await self._wanted_accounts(reload)
        self._wanted = wanted
        stopping = []
        for account_id, task in list(self._tasks.items()):
            if (
                account_id not in wanted
                or account_id not in self.keeper.held
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
        unwanted = [a for a in self.keeper.held if a not in wanted]
        if unwanted:
            await self.keeper.release(unwanted)
        await self.keeper.claim(sorted(wanted))
        now = asyncio.get_running_loop().time()
        for account_id in sorted(set(wanted) & set(self.keeper.held) - set(self._tasks)):
            if self._restart_at.get(account_id, now) > now:
                continue  # died recently: wait out its backoff
            db = self.keeper.fenced(self.keeper.held[account_id])
            made: list[AccountWorker] = []
            if account_id == DEFAULT_SENDER:
                body = functools.partial(self._default_sender, db)
                coro = _keep_going("default sender", body, self.options.backoff())
            else:
                # The worker is made in its own task: a thousand accounts starting do not
                # wait in line for each other's read of their account.
                coro = self._account_worker(db, account_id, made)
            self._versions[account_id] = wanted[account_id]
            task = asyncio.create_task(coro, name=f"account-{account_id}")
            task.add_done_callback(functools.partial(self._worker_ended, account_id, made))
            self._tasks[account_id] = task
            log.info("sync started for account %s", account_id)

    async def _account_worker(
        self, db: Database, account_id: int, made: list[AccountWorker]
    ) -> None:
        worker = await worker_for(db, self.box, account_id, self.options, problems=self.problems)
        made.append(worker)
        if self._tasks.get(account_id) is asyncio.current_task():
            self._workers[account_id] = worker
        await worker.run()

    async def _wanted_accounts(self, reload: bool) -> dict[int, str]:
        now = asyncio.get_running_loop().time()
        stamp = await self.db.read(accounts.active_version)
        if (
            not reload
            and self._loaded is not None
            and self._loaded[0] == stamp
            and now - self._loaded[1] < RELOAD_EVERY
        ):
            return self._wanted
        wanted = dict(await self.db.read(accounts.active_connections))
        if self.default_smtp is not None:
            wanted[DEFAULT_SENDER] = "default provider"
        self._loaded = (stamp, now)
        return wanted

    def _worker_ended(
        self, account_id: int, made: list[AccountWorker], task: asyncio.Task[None]
    ) -> None:
        """A worker that died is never silent: its exception is read, logged, shown on the
        account's status, and the worker is started again after a backoff."""
        if task.cancelled() or task.exception() is None:
            return  # stopped, or paused on refused credentials (recorded by the worker)
        exc = task.exception()
        assert exc is not None
        if isinstance(exc, LeaseLost):
            # Another process holds the account now: nothing to record (its status is
            # the new owner's to write) and nothing to restart here.
            log.warning("account %s: %s", account_id, exc.message)
            self.keeper.held.pop(account_id, None)
            self._wake_soon(task)
            return
        crashes = self._crashes.get(account_id, self.options.backoff())
        if made and made[0].healthy_rounds:
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

    def _wake_soon(self, task: asyncio.Task[None]) -> None:
        loop = task.get_loop()
        if not loop.is_closed():
            loop.call_soon(self._wake.set)

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
        except LeaseLost:
            raise  # another process runs it now
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
