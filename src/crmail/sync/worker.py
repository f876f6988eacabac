"""One account's sync worker: connect, import, then follow the mailbox in real time.

An idle account holds one IMAP connection. It sits in IDLE on INBOX (push: new mail
shows in well under a second) and watches the other synced folders (Sent, Archive,
chosen folders) from there: by RFC 5465 NOTIFY where the server offers it (a STATUS
of a changed folder ends the IDLE), else by a STATUS of each between IDLE cycles.
Connections for work come and go: one imports the other folders beside INBOX's import
and closes when they are in; one runs the outbox from the first queued action and
closes after a quiet while (``work_linger``). The folder loops use :class:`FolderSync`
rounds, whose every commit carries the folder cursor, so stopping the worker anywhere
loses nothing.

Each connection recovers alone: a dropped connection (or a database write that failed)
is retried with its own backoff while the other loops keep working, and a successful
round resets that backoff (:class:`crmail.domain.account.Backoff`). Logins are paced
process-wide (``connect_concurrency`` at a time), so a thousand accounts starting
together come live without their handshakes timing out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent, Backoff
from crmail.domain.folders import Role
from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import (
    AuthFailed,
    ConnectFailed,
    CrmailError,
    ProviderError,
    StorageError,
)
from crmail.providers.imap import ImapClient, ImapSettings
from crmail.providers.oauth import GrantRevoked, TokenKeeper
from crmail.storage import accounts, mail, outbox
from crmail.storage.db import Database
from crmail.sync.drain import drain_outbox, run_outbox_action
from crmail.sync.folders import FolderGone, discover
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.graph.options import GraphOptions
from crmail.sync.inbound import FolderSync, SyncOptions
from crmail.sync.sending import Sending, smtp_settings_for
from crmail.sync.syncback import SyncBack

log = logging.getLogger(__name__)

#: import slices per round while following a mailbox: enough to keep the network and the
#: database busy together, few enough that new mail still shows within about a second
IMPORT_SLICES_PER_ROUND = 4

#: the folders beside INBOX get an import connection of their own only when they hold
#: more than this many messages; fewer are imported by the watch connection in its first
#: rounds (a new account's Sent and Archive are often empty: a second TLS handshake and
#: login for them cost more than their import)
OWN_IMPORT_CONNECTION_FROM = 200

#: with NOTIFY the server tells of changes in the other folders; they are still looked
#: at every ``poll_interval`` times this, in case a notice was lost
NOTIFY_SAFETY_FACTOR = 10

#: the login gate of each event loop (asyncio primitives belong to one loop)
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _connect_gate(limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(limit)
    return gate


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    sync: SyncOptions = field(default_factory=SyncOptions)
    poll_interval: float = 30.0
    idle_timeout: float = 60.0
    #: the first retry waits about this long; each failure in a row doubles it
    min_backoff: float = 1.0
    max_backoff: float = 300.0
    #: where the account's servers may be (Settings.mail_policy; the runtime always sets
    #: it): checked at every connection, so an account saved another way cannot reach
    #: the host's network either. None: unchecked (tests, benchmarks on loopback)
    address_policy: AddressPolicy | None = None
    #: fresh access tokens for accounts connected with Google / Microsoft (XOAUTH2);
    #: None: the stored access token is used as it is
    tokens: TokenKeeper | None = None
    #: accounts that sync through the Gmail API (provider "gmail")
    gmail: GmailOptions = field(default_factory=GmailOptions)
    #: accounts that sync through Microsoft Graph (provider "graph")
    graph: GraphOptions = field(default_factory=GraphOptions)
    #: the outbox's connection closes after this long without an action
    work_linger: float = 60.0
    #: IMAP logins in flight at once in this process (start-up of many accounts)
    connect_concurrency: int = 20

    def backoff(self) -> Backoff:
        return Backoff(first=self.min_backoff, cap=self.max_backoff)


#: what a loop retries after: the network, the server, or the database refused
RETRYABLE = (ProviderError, OSError, StorageError)


def as_error(exc: BaseException) -> CrmailError:
    return exc if isinstance(exc, CrmailError) else ProviderError(str(exc) or type(exc).__name__)


def imap_settings(
    account: mail.AccountInfo, box: SecretBox, policy: AddressPolicy | None = None
) -> ImapSettings:
    cfg = account.settings
    secrets = box.open(account.secret)
    return ImapSettings(
        host=str(cfg["imap_host"]),
        port=int(str(cfg["imap_port"])),
        security=str(cfg.get("imap_security", "tls")),
        username=str(cfg.get("username") or account.email),
        password=secrets.get("password"),
        oauth2_token=secrets.get("oauth2_token"),
        ca_file=str(cfg["ca_file"]) if cfg.get("ca_file") else None,
        # Extensions a buggy server advertises but gets wrong can be switched off per account.
        disabled_caps=frozenset(str(c).upper() for c in _as_list(cfg.get("imap_disabled_caps"))),
        address_policy=policy,
    )


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


class AccountWorker:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        account_id: int,
        options: WorkerOptions = WorkerOptions(),
        *,
        on_change: Callable[[int], None] | None = None,
        problems: dict[int, CrmailError] | None = None,
        account: mail.AccountInfo | None = None,
    ) -> None:
        self.db = db
        #: the account as read by whoever made the worker: the first session uses it
        self._account = account
        self.box = box
        self.account_id = account_id
        self.options = options
        self.on_change = on_change
        self._clients: list[ImapClient] = []
        self._outbox_wake = asyncio.Event()
        self._sender: Sending | None = None
        #: sends SMTP accepted whose "sent" stage is not recorded yet (Sending.accepted)
        self._accepted_sends: dict[int, dict[str, object]] = {}
        self._importing: set[int] = set()
        #: the sealed credentials this session logged in with
        self._secret: bytes | None = None
        #: connected with Google / Microsoft: logins use a fresh access token
        self._oauth = False
        #: retry state of the session ("session") and of each of its loops
        self.backoff: dict[str, Backoff] = {}
        #: loops whose connection is down, waiting to reconnect
        self._down: set[str] = set()
        #: rounds (and drained actions) that succeeded over the worker's life
        self.healthy_rounds = 0
        #: per account, the failure being retried until a round succeeds again: the
        #: status shows it even while the database cannot record it (a lock, a full disk)
        self.problems = {} if problems is None else problems

    # --- entry points --------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until cancelled; network and database trouble is retried with backoff,
        auth errors pause."""
        while True:
            try:
                await self._session(follow=True)
            except AuthFailed as exc:
                await self._auth_failed(exc)
                log.warning("account %s: %s; paused until reconnect", self.account_id, exc.message)
                return
            except RETRYABLE as exc:
                await self._close_clients()
                await self._retry_after("session", as_error(exc))
            finally:
                await self._close_clients()

    async def run_once(self) -> None:
        """Import and catch up every synced folder, then return (CLI `sync --once`, tests, bench)."""
        try:
            await self._session(follow=False)
        except AuthFailed as exc:
            await self._auth_failed(exc)
            raise
        except (ProviderError, StorageError) as exc:
            await self._record_failure(exc)
            raise
        finally:
            await self._close_clients()

    # --- a connected session ---------------------------------------------------------------

    async def _session(self, *, follow: bool) -> None:
        await self._event(AccountEvent.START)
        account, self._account = self._account, None
        if account is None:
            account = await self.db.read(lambda s: mail.account_info(s, self.account_id))
        self._secret = account.secret
        self._oauth = bool(account.settings.get("oauth_provider"))
        settings = imap_settings(account, self.box, self.options.address_policy)
        if account.settings.get("mode") == "one_way":
            await self._outbox_only(account, settings, follow=follow)
            return
        main = await self._connect(settings)
        folders = await discover(self.db, self.account_id, main, account=account)
        importing = not all(f.import_complete for f in folders) or any(
            f.uidnext is None for f in folders
        )
        await self._event(
            AccountEvent.CONNECTED_IMPORTING if importing else AccountEvent.CONNECTED_LIVE
        )
        inbox = [f for f in folders if f.role is Role.INBOX]
        others = [f for f in folders if f.role is not Role.INBOX]
        opts = self.options.sync
        self._healthy("session")
        if not follow:
            sync = FolderSync(self.db, account, main, opts)
            todo, finished, looks = list(folders), set(), 0
            while todo:
                f = todo.pop(0)
                try:
                    while not (f := await sync.round(f, import_batches=1_000_000)).import_complete:
                        pass
                    finished.add(f.id)
                except FolderGone as gone:
                    looks += 1
                    if looks > len(folders):
                        raise  # folders change faster than they can be looked at
                    log.info("account %s: %s; looking again", self.account_id, gone.message)
                    found = await discover(self.db, self.account_id, main)
                    todo = [g for g in found if g.id not in finished]
            await self._event(AccountEvent.IMPORT_FINISHED)
            await self._drain_outbox(SyncBack(self.db, account, main), follow=False)
            return
        self._importing = {f.id for f in folders if not f.import_complete or f.uidnext is None}
        self._down.clear()

        # One FolderSync per loop for the worker's life: a reconnect swaps its client
        # and keeps what it learnt (pending import UIDs, a shrunk batch size).
        idling = FolderSync(self.db, account, main, opts, status_probe=False)
        watching = FolderSync(self.db, account, main, opts)
        to_import = [f for f in others if not f.import_complete or f.uidnext is None]
        watch = _Watch(
            inbox_id=inbox[0].id if inbox else None,
            other_ids=[f.id for f in others],
            importer=bool(to_import) and await _worth_a_connection(main, to_import),
        )

        # The watch's first pass starts from the folders as discovery just left them;
        # after a reconnect it reads them again.
        fresh = [folders]

        async def follow_mailbox(client: ImapClient) -> None:
            idling.client = watching.client = client
            await self._watch(idling, watching, watch, fresh.pop() if fresh else None)

        tasks = [
            self._keep_connected("watch", settings, main, follow_mailbox),
            self._outbox(SyncBack(self.db, account, main), settings),
        ]
        if watch.importer:
            importer = [FolderSync(self.db, account, main, opts)]

            async def import_others(client: ImapClient) -> None:
                importer[0].client = client
                await self._import_others(importer[0], watch)
                # The import is in: the watch takes over. Nothing may keep the closed
                # connection (and its buffers) alive for the session's life.
                importer.clear()
                await self._drop(client)

            tasks.append(self._keep_connected("import", settings, None, import_others))
        await _gather_or_fail(tasks)

    async def _outbox_only(
        self, account: mail.AccountInfo, settings: ImapSettings, *, follow: bool
    ) -> None:
        """1-way mode (seed 004): nothing is read from the mailbox — no folder is listed,
        imported or followed. The session exists only so CRM sends go out and file
        their copy in Sent; mail reaches the CRM through the BCC drop address instead."""
        client = await self._connect(settings)
        await self._event(AccountEvent.CONNECTED_LIVE)
        self._healthy("session")
        if not follow:
            await self._drain_outbox(SyncBack(self.db, account, client), follow=False)
            return
        self._down.clear()

        async def drain(c: ImapClient) -> None:
            self._healthy("outbox")  # connected and logged in: its round is waiting
            await self._drain_outbox(SyncBack(self.db, account, c))

        await self._keep_connected("outbox", settings, client, drain)

    async def _watch(
        self,
        idling: FolderSync,
        watching: FolderSync,
        watch: _Watch,
        discovered: list[mail.FolderInfo] | None = None,
    ) -> None:
        """The connection every account keeps: INBOX in IDLE, the other folders watched
        from there (NOTIFY, else a STATUS of each between IDLE cycles).

        ``discovered``: the folders as the session's discovery returned them, before any
        round; otherwise they are read from the database."""
        client = idling.client
        loop = asyncio.get_running_loop()
        # From the database, not from memory: a round cut short by a dropped connection
        # may have committed batches past what the last completed round returned.
        ids = [*([watch.inbox_id] if watch.inbox_id else []), *watch.other_ids]
        if discovered is None:
            current = await self._folders(ids)
        else:
            by_id = {f.id: f for f in discovered}
            current = [by_id[i] for i in ids if i in by_id]
        inbox = next((f for f in current if f.id == watch.inbox_id), None)
        others = [f for f in current if f.id != watch.inbox_id]
        notify = await client.notify([f.name for f in others])
        # A folder watched by NOTIFY is held open by the server: its STATUS describes
        # it even after another client renamed it away, so a look is a SELECT there.
        watching.status_probe = not notify
        look_every = self.options.poll_interval * (NOTIFY_SAFETY_FACTOR if notify else 1)
        next_look = loop.time()  # every folder first: changes made while disconnected
        noticed: set[str] = set()
        importer = watch.importer
        stale = True  # INBOX: a round before the first IDLE, then after each change
        while True:
            if importer and not watch.importer:
                # The import connection is done with the other folders: take them over
                # as it left them (cursors, and the folders themselves, may have moved).
                importer = False
                others = await self._folders(watch.other_ids)
                notify = await client.notify([f.name for f in others])
                watching.status_probe = not notify
                next_look = loop.time()
            due = loop.time() >= next_look
            if due:
                next_look = loop.time() + look_every
            if not watch.importer and others:
                todo = [f for f in others if due or f.name in noticed or not f.import_complete]
                if todo:
                    noticed.difference_update(f.name for f in todo)
                    found = await self._other_rounds(watching, todo, watch)
                    if found is not None:  # the folders changed on the server
                        others = found
                        notify = await client.notify([f.name for f in others])
                        watching.status_probe = not notify
                        next_look = loop.time()
                        continue
                    by_id = {f.id: f for f in todo}
                    others = [by_id.get(f.id, f) for f in others]
                    self._healthy("watch")
                    self._changed()
            # An IDLE that ended without news is re-issued without a round: the server
            # reports every change to INBOX while idling; the safety look is ``due``.
            if inbox is not None and (
                stale or due or not inbox.import_complete or client.selected != inbox.name
            ):
                # Last before IDLE: the round leaves INBOX selected for it.
                inbox = await idling.round(inbox, import_batches=IMPORT_SLICES_PER_ROUND)
                stale = False
                self._healthy("watch")
                self._changed()
                if not inbox.import_complete:
                    continue  # new mail is still checked first in every round
                await self._import_finished(inbox.id)
            if not watch.importer and not all(f.import_complete for f in others):
                continue
            timeout = min(self.options.idle_timeout, max(0.0, next_look - loop.time()))
            if inbox is not None:
                stale = bool(await client.idle(timeout=timeout))
            else:
                await asyncio.sleep(timeout)
            noticed |= client.notified()

    async def _other_rounds(
        self, sync: FolderSync, todo: list[mail.FolderInfo], watch: _Watch
    ) -> list[mail.FolderInfo] | None:
        """A round of each folder in ``todo`` (updated in place). When one is gone, the
        folders are looked up again: returns the new list of folders other than INBOX."""
        try:
            for i, f in enumerate(todo):
                todo[i] = await sync.round(f, import_batches=IMPORT_SLICES_PER_ROUND)
                if todo[i].import_complete:
                    await self._import_finished(f.id)
            return None
        except FolderGone as gone:
            log.info("account %s: %s; looking again", self.account_id, gone.message)
            found = await discover(self.db, self.account_id, sync.client)
            current = [f for f in found if f.role is not Role.INBOX]
            watch.other_ids[:] = [f.id for f in current]
            self._importing = {f.id for f in found if f.id in self._importing} | {
                f.id for f in current if not f.import_complete or f.uidnext is None
            }
            self._changed()
            return current

    async def _import_others(self, sync: FolderSync, watch: _Watch) -> None:
        """The initial import of the folders other than INBOX, on a connection of its
        own beside INBOX's (which the watch imports): returns once they are all in."""
        current = await self._folders(watch.other_ids)
        while not all(f.import_complete for f in current):
            found = await self._other_rounds(sync, current, watch)
            if found is not None:
                current = found
            self._healthy("import")
            self._changed()
        watch.importer = False

    async def _folders(self, ids: list[int]) -> list[mail.FolderInfo]:
        by_id = {f.id: f for f in await self.db.read(lambda s: mail.folders(s, self.account_id))}
        return [by_id[i] for i in ids if i in by_id]

    async def _keep_connected(
        self,
        loop: str,
        settings: ImapSettings,
        client: ImapClient | None,
        body: Callable[[ImapClient], Awaitable[None]],
    ) -> None:
        """Run ``body`` on its own connection; when that connection drops (or a database
        write fails), reconnect it alone, after this loop's backoff. The other loops go
        on: their connections and the work they have in hand are not thrown away."""
        while True:
            try:
                if client is None:
                    client = await self._connect(settings)
                    await self._reconnected(loop)
                await body(client)
                return
            except RETRYABLE as exc:
                if isinstance(exc, AuthFailed):
                    raise
                if client is not None:
                    await self._drop(client)
                    client = None
                self._down.add(loop)
                await self._retry_after(loop, as_error(exc))

    def wake(self) -> None:
        """An action was queued for this account: drain now (call from the worker's loop)."""
        self._outbox_wake.set()

    async def _outbox(self, syncback: SyncBack, settings: ImapSettings) -> None:
        """The outbox, on a connection opened for the first action and closed after
        ``work_linger`` without one: an account with nothing to send holds none."""
        work = _WorkConnection(self, settings, self.options.work_linger, syncback)
        try:
            while True:
                try:
                    await self._drain_outbox(syncback, work=work)
                    return
                except RETRYABLE as exc:
                    if isinstance(exc, AuthFailed):
                        raise
                    await work.close()
                    self._down.add("outbox")
                    await self._retry_after("outbox", as_error(exc))
        finally:
            await work.close()

    async def _drain_outbox(
        self, syncback: SyncBack, *, follow: bool = True, work: _WorkConnection | None = None
    ) -> None:
        def done() -> None:
            self._healthy("outbox")
            self._changed()
            if work is not None:
                work.release()

        async def run(action: outbox.Action) -> None:
            if work is not None:
                # Dropped while it waited for work, or closed after a quiet while: the
                # action is not held against (no failed attempt, no delay) when this
                # connect fails; it is requeued when the drain restarts.
                syncback.client = await work.acquire()
            await self._run_action(syncback, action)

        await drain_outbox(
            self.db,
            self.account_id,
            run,
            self._outbox_wake,
            follow=follow,
            on_done=done,
        )

    async def _run_action(self, syncback: SyncBack, action: outbox.Action) -> None:
        if syncback.client.dropped:
            # Dropped while it waited for work: reconnect first. The action is not held
            # against (no failed attempt, no delay); it is requeued when the drain restarts.
            raise ConnectFailed(f"the connection to {syncback.client.settings.host} was closed")

        async def send(action: outbox.Action) -> None:
            sender = self._sending(syncback)
            if (token := await self._fresh_token()) is not None:
                sender.settings = replace(sender.settings, oauth2_token=token)
            await sender.run(action)

        # A StorageError is not the action's fault: it stays claimed, is requeued when
        # the drain starts again, and runs once the database takes writes again. A lost
        # IMAP session reconnects (or pauses) like any other loop.
        await run_outbox_action(
            self.db,
            self.account_id,
            action,
            syncback.run,
            send,
            fatal=lambda a, exc: a.kind == "sync" and isinstance(exc, ConnectFailed | AuthFailed),
        )

    def _sending(self, syncback: SyncBack) -> Sending:
        if self._sender is None or self._sender.syncback is not syncback:
            account = syncback.account
            self._sender = Sending(
                self.db,
                smtp_settings_for(account, self.box, self.options.address_policy),
                account=account,
                syncback=syncback,
                accepted=self._accepted_sends,
            )
        return self._sender

    async def _fresh_token(self, refused: str | None = None) -> str | None:
        """An OAuth account's access token for the next login (refreshed when near its
        expiry, or because the server just refused ``refused``); None otherwise."""
        if not self._oauth or self.options.tokens is None:
            return None
        try:
            token = await self.options.tokens.access_token(self.account_id, refused=refused)
        except GrantRevoked as exc:
            self._secret = exc.version  # the refusal is about these tokens
            raise
        self._secret = token.version
        return token.token

    async def _import_finished(self, folder_id: int) -> None:
        if folder_id in self._importing:
            self._importing.discard(folder_id)
            if not self._importing:
                await self._event(AccountEvent.IMPORT_FINISHED)

    # --- helpers -----------------------------------------------------------------------------

    async def _connect(self, settings: ImapSettings) -> ImapClient:
        async with _connect_gate(self.options.connect_concurrency):
            return await self._login(settings)

    async def _login(self, settings: ImapSettings) -> ImapClient:
        token = await self._fresh_token()
        if token is not None:
            settings = replace(settings, oauth2_token=token)
        try:
            client = await ImapClient.connect(settings)
        except AuthFailed:
            if token is None:
                raise
            # Refused before its expiry (revoked, or the clock is off): refresh, once.
            settings = replace(settings, oauth2_token=await self._fresh_token(refused=token))
            client = await ImapClient.connect(settings)
        self._clients.append(client)
        return client

    async def _drop(self, client: ImapClient) -> None:
        if client in self._clients:
            self._clients.remove(client)
        await client.close()

    async def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()

    # --- health and retrying ---------------------------------------------------------------

    def _healthy(self, loop: str) -> None:
        """A round went through: this loop's next failure waits the shortest time again."""
        self.healthy_rounds += 1
        if not self._down:
            self.problems.pop(self.account_id, None)
        current = self.backoff.get(loop)
        if current is not None and current.attempt:
            self.backoff[loop] = current.succeeded()

    async def _retry_after(self, loop: str, error: CrmailError) -> None:
        """Record why (the account's status shows it), then wait this loop's backoff."""
        backoff = self.backoff.get(loop, self.options.backoff()).failed()
        self.backoff[loop] = backoff
        self.problems[self.account_id] = error
        await self._record_failure(error)
        delay = backoff.delay(random.uniform(0.5, 1.0))
        log.warning(
            "account %s: %s (%s, failure %d in a row); retrying in %.1fs",
            self.account_id,
            error.message,
            loop,
            backoff.attempt,
            delay,
        )
        await asyncio.sleep(delay)

    async def _record_failure(self, error: BaseException) -> None:
        err = as_error(error)
        event = (
            AccountEvent.STORAGE_FAILED
            if isinstance(err, StorageError)
            else AccountEvent.NETWORK_FAILED
        )
        try:
            await self._event(event, err)
        except StorageError as exc:
            # The database that failed may refuse this write too: the log has it, and the
            # status gets it with the next failure that reaches the database.
            log.info("account %s: %s (not recorded: %s)", self.account_id, err.message, exc)

    async def _reconnected(self, loop: str) -> None:
        self._down.discard(loop)
        if not self._down:
            await self._event(
                AccountEvent.CONNECTED_IMPORTING if self._importing else AccountEvent.CONNECTED_LIVE
            )

    async def _auth_failed(self, error: AuthFailed) -> None:
        used = self._secret
        await self.db.write(lambda s: accounts.auth_failed(s, self.account_id, error, used))

    async def _event(self, event: AccountEvent, error: CrmailError | None = None) -> None:
        await self.db.write(lambda s: accounts.try_event(s, self.account_id, event, error))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.account_id)


async def _worth_a_connection(client: ImapClient, folders: list[mail.FolderInfo]) -> bool:
    """Whether importing these folders deserves a connection beside the watch's."""
    total = 0
    for f in folders:
        try:
            total += (await client.status(f.name)).messages
        except ProviderError:
            return True  # the import connection's rounds find out what became of it
        if total > OWN_IMPORT_CONNECTION_FROM:
            return True
    return False


async def _gather_or_fail(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run the loops together; the first failure cancels the others and propagates."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        # Bounded: one loop stuck in a server call must not keep the others' session open.
        await asyncio.wait(tasks, timeout=10.0)
        for t in tasks:
            # Read every ending: a loop that failed while others were failing is logged,
            # not left to a "never retrieved" warning at garbage collection.
            if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
                log.debug("a sync loop ended with %r", exc)


@dataclass(slots=True)
class _Watch:
    """The folders the watch connection follows, shared with the import connection."""

    inbox_id: int | None
    #: updated in place when the folders change on the server
    other_ids: list[int]
    #: the other folders are being imported on a connection of their own
    importer: bool


class _WorkConnection:
    """A connection opened when there is work, closed after ``linger`` s without any."""

    def __init__(
        self, worker: AccountWorker, settings: ImapSettings, linger: float, syncback: SyncBack
    ) -> None:
        self.worker = worker
        self.settings = settings
        self.linger = linger
        #: between bursts it points back at the client it was made with, not at a
        #: closed one (which would keep that connection's buffers alive)
        self.syncback = syncback
        self._home = syncback.client
        self.client: ImapClient | None = None
        self._closing: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def acquire(self) -> ImapClient:
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        if self.client is not None and self.client.dropped:
            await self.close()
        if self.client is None:
            self.client = await self.worker._connect(self.settings)
            self.worker._healthy("outbox")  # connected and logged in
            if "outbox" in self.worker._down:
                await self.worker._reconnected("outbox")
        return self.client

    def release(self) -> None:
        """The work at hand is done: close the connection unless more comes soon."""
        if self.client is None or self._closing is not None:
            return
        loop = asyncio.get_running_loop()
        self._closing = loop.call_later(self.linger, self._close_later)

    def _close_later(self) -> None:
        self._closing = None
        task = asyncio.ensure_future(self.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        client, self.client = self.client, None
        if client is not None:
            self.syncback.client = self._home
            await self.worker._drop(client)
