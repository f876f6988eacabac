"""One account's sync worker: connect, import, then follow the mailbox in real time.

Two IMAP connections per account: one sits in IDLE on INBOX (push: new mail shows in
well under a second), the other walks the other synced folders (Sent, Archive, chosen
folders) with a short poll. Both use :class:`FolderSync` rounds, whose every commit
carries the folder cursor, so stopping the worker anywhere loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent
from crmail.domain.folders import Role
from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import AuthFailed, ConnectFailed, CrmailError, InvalidInput, ProviderError
from crmail.providers.imap import ImapClient, ImapSettings
from crmail.storage import accounts, actions, mail, outbox
from crmail.storage.db import Database
from crmail.sync.drain import drain_outbox
from crmail.sync.folders import FolderGone, discover
from crmail.sync.inbound import FolderSync, SyncOptions
from crmail.sync.sending import Sending, smtp_settings_for
from crmail.sync.syncback import SyncBack

log = logging.getLogger(__name__)

#: import slices per round while following a mailbox: enough to keep the network and the
#: database busy together, few enough that new mail still shows within about a second
IMPORT_SLICES_PER_ROUND = 4


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    sync: SyncOptions = field(default_factory=SyncOptions)
    poll_interval: float = 30.0
    idle_timeout: float = 60.0
    max_backoff: float = 300.0
    #: where the account's servers may be (Settings.mail_policy; the runtime always sets
    #: it): checked at every connection, so an account saved another way cannot reach
    #: the host's network either. None: unchecked (tests, benchmarks on loopback)
    address_policy: AddressPolicy | None = None


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
    ) -> None:
        self.db = db
        self.box = box
        self.account_id = account_id
        self.options = options
        self.on_change = on_change
        self._clients: list[ImapClient] = []
        self._outbox_wake = asyncio.Event()
        self._sender: Sending | None = None
        self._importing: set[int] = set()
        #: the sealed credentials this session logged in with
        self._secret: bytes | None = None

    # --- entry points --------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until cancelled; network trouble is retried with backoff, auth errors pause."""
        attempt = 0
        while True:
            try:
                await self._session(follow=True)
                attempt = 0
            except AuthFailed as exc:
                await self._auth_failed(exc)
                log.warning("account %s: %s; paused until reconnect", self.account_id, exc.message)
                return
            except (ProviderError, OSError) as exc:
                err = exc if isinstance(exc, CrmailError) else ProviderError(str(exc))
                await self._event(AccountEvent.NETWORK_FAILED, err)
                attempt += 1
                delay = min(self.options.max_backoff, 2 ** min(attempt, 10)) * random.uniform(
                    0.5, 1.0
                )
                log.info("account %s: %s; retrying in %.1fs", self.account_id, err.message, delay)
                await asyncio.sleep(delay)
            finally:
                await self._close_clients()

    async def run_once(self) -> None:
        """Import and catch up every synced folder, then return (CLI `sync --once`, tests, bench)."""
        try:
            await self._session(follow=False)
        except AuthFailed as exc:
            await self._auth_failed(exc)
            raise
        except ProviderError as exc:
            await self._event(AccountEvent.NETWORK_FAILED, exc)
            raise
        finally:
            await self._close_clients()

    # --- a connected session ---------------------------------------------------------------

    async def _session(self, *, follow: bool) -> None:
        await self._event(AccountEvent.START)
        account = await self.db.read(lambda s: mail.account_info(s, self.account_id))
        self._secret = account.secret
        settings = imap_settings(account, self.box, self.options.address_policy)
        if account.settings.get("mode") == "one_way":
            await self._outbox_only(account, settings, follow=follow)
            return
        main = await self._connect(settings)
        folders = await discover(self.db, self.account_id, main)
        importing = not all(f.import_complete for f in folders) or any(
            f.uidnext is None for f in folders
        )
        await self._event(
            AccountEvent.CONNECTED_IMPORTING if importing else AccountEvent.CONNECTED_LIVE
        )
        inbox = [f for f in folders if f.role is Role.INBOX]
        others = [f for f in folders if f.role is not Role.INBOX]
        opts = self.options.sync
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
        # Connect everything first: a failure then leaves no loop half-started.
        actions_client = await self._connect(settings)
        second = await self._connect(settings) if others else None
        self._importing = {f.id for f in folders if not f.import_complete or f.uidnext is None}
        tasks = [self._drain_outbox(SyncBack(self.db, account, actions_client))]
        if inbox:
            idling = FolderSync(self.db, account, main, opts, status_probe=False)
            tasks.append(self._follow_inbox(idling, inbox[0]))
        if second is not None:
            tasks.append(self._poll_folders(FolderSync(self.db, account, second, opts), others))
        await _gather_or_fail(tasks)

    async def _outbox_only(
        self, account: mail.AccountInfo, settings: ImapSettings, *, follow: bool
    ) -> None:
        """1-way mode (seed 004): nothing is read from the mailbox — no folder is listed,
        imported or followed. The session exists only so CRM sends go out and file
        their copy in Sent; mail reaches the CRM through the BCC drop address instead."""
        client = await self._connect(settings)
        await self._event(AccountEvent.CONNECTED_LIVE)
        await self._drain_outbox(SyncBack(self.db, account, client), follow=follow)

    async def _follow_inbox(self, sync: FolderSync, folder: mail.FolderInfo) -> None:
        while True:
            folder = await sync.round(folder, import_batches=IMPORT_SLICES_PER_ROUND)
            self._changed()
            if not folder.import_complete:
                continue  # new mail is still checked first in every round
            await self._import_finished(folder.id)
            await sync.client.idle(timeout=self.options.idle_timeout)

    async def _poll_folders(self, sync: FolderSync, folders: list[mail.FolderInfo]) -> None:
        current = list(folders)
        while True:
            try:
                for i, f in enumerate(current):
                    current[i] = await sync.round(f, import_batches=IMPORT_SLICES_PER_ROUND)
                    if current[i].import_complete:
                        await self._import_finished(f.id)
            except FolderGone as gone:
                log.info("account %s: %s; looking again", self.account_id, gone.message)
                found = await discover(self.db, self.account_id, sync.client)
                current = [f for f in found if f.role is not Role.INBOX]
                self._importing = {f.id for f in found if f.id in self._importing} | {
                    f.id for f in current if not f.import_complete or f.uidnext is None
                }
                self._changed()
                continue
            self._changed()
            if all(f.import_complete for f in current):
                await asyncio.sleep(self.options.poll_interval)

    def wake(self) -> None:
        """An action was queued for this account: drain now (call from the worker's loop)."""
        self._outbox_wake.set()

    async def _drain_outbox(self, syncback: SyncBack, *, follow: bool = True) -> None:
        await drain_outbox(
            self.db,
            self.account_id,
            lambda action: self._run_action(syncback, action),
            self._outbox_wake,
            follow=follow,
            on_done=self._changed,
        )

    async def _run_action(self, syncback: SyncBack, action: outbox.Action) -> None:
        try:
            if action.kind == "sync":
                await syncback.run(action)
            elif action.kind == "send":
                await self._sending(syncback).run(action)
            else:
                raise InvalidInput(f"unknown action kind {action.kind!r}")
        except CrmailError as exc:
            retryable = isinstance(exc, ProviderError) and exc.retryable
            message = exc.message
            if action.kind == "sync":
                await self.db.write(
                    lambda s: actions.sync_failed(s, action.id, message, retryable=retryable)
                )
            else:
                await self.db.write(
                    lambda s: outbox.fail(s, action.id, message, retryable=retryable)
                )
            log.warning("account %s: action %s failed: %s", self.account_id, action.id, message)
            if action.kind == "sync" and isinstance(exc, ConnectFailed | AuthFailed):
                raise  # the IMAP session is gone: reconnect (or pause) like any other loop

    def _sending(self, syncback: SyncBack) -> Sending:
        if self._sender is None or self._sender.syncback is not syncback:
            account = syncback.account
            self._sender = Sending(
                self.db,
                smtp_settings_for(account, self.box, self.options.address_policy),
                account=account,
                syncback=syncback,
            )
        return self._sender

    async def _import_finished(self, folder_id: int) -> None:
        if folder_id in self._importing:
            self._importing.discard(folder_id)
            if not self._importing:
                await self._event(AccountEvent.IMPORT_FINISHED)

    # --- helpers -----------------------------------------------------------------------------

    async def _connect(self, settings: ImapSettings) -> ImapClient:
        client = await ImapClient.connect(settings)
        self._clients.append(client)
        return client

    async def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()

    async def _auth_failed(self, error: AuthFailed) -> None:
        used = self._secret
        await self.db.write(lambda s: accounts.auth_failed(s, self.account_id, error, used))

    async def _event(self, event: AccountEvent, error: CrmailError | None = None) -> None:
        await self.db.write(lambda s: accounts.try_event(s, self.account_id, event, error))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.account_id)


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
