"""One Gmail API account's sync worker: import, then follow the mailbox.

Two loops share one HTTP client (Gmail's API has no per-connection state):

- sync: each round applies the history since the stored historyId
  (:mod:`.changes`), then a few pages of the import while it lasts (:mod:`.importer`);
  between rounds it waits for a push notification (:meth:`GmailWorker.pushed`, from
  ``POST /api/push/gmail/{token}``) or the safety poll (``poll_interval``), whichever
  comes first. History that Gmail no longer has (404) restarts the import, which
  duplicates nothing;
- outbox: CRM actions as label changes (:mod:`.syncback`), sends through
  ``messages.send`` (:mod:`.sending`), in order, each recorded before the next.

With a Pub/Sub topic configured, ``users.watch`` is called at the start and renewed
daily (a watch lasts 7 days). Retries, backoff, auth pauses and the account's status
are those of the IMAP worker (:class:`crmail.sync.worker.AccountWorker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent
from crmail.errors import (
    AuthFailed,
    CrmailError,
    HistoryExpired,
    InvalidInput,
    ProviderError,
    StorageError,
)
from crmail.providers.gmail import GmailClient
from crmail.storage import actions, mail, outbox, remote
from crmail.storage.db import Database
from crmail.sync.drain import drain_outbox
from crmail.sync.gmail.changes import catch_up
from crmail.sync.gmail.importer import PAGE, Importer, window_start
from crmail.sync.gmail.ingest import GmailIngest
from crmail.sync.gmail.labels import Layout, wanted_folders
from crmail.sync.gmail.sending import GmailSending
from crmail.sync.gmail.syncback import GmailSyncBack
from crmail.sync.worker import (
    IMPORT_SLICES_PER_ROUND,
    RETRYABLE,
    AccountWorker,
    WorkerOptions,
    _gather_or_fail,
    as_error,
)

log = logging.getLogger(__name__)

#: import pages per round of `run_once` (the CLI's `sync --once`): all of them
ALL_PAGES = 1_000_000
#: seconds between two records of "checked, nothing changed" (folders' last_sync_at)
HEARTBEAT_EVERY = 300.0


class GmailWorker(AccountWorker):
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        account_id: int,
        options: WorkerOptions | None = None,
        *,
        on_change: Callable[[int], None] | None = None,
        problems: dict[int, CrmailError] | None = None,
    ) -> None:
        super().__init__(
            db, box, account_id, options or WorkerOptions(), on_change=on_change, problems=problems
        )
        self._history_wake = asyncio.Event()
        self._client: GmailClient | None = None
        self._access: str | None = None
        #: the session's ingest (tests and the bench read its figures)
        self.ingest: GmailIngest | None = None
        #: sync rounds done (a figure for tests: push wakes a round before the poll)
        self.rounds = 0
        self._last_heartbeat: float | None = None

    def pushed(self) -> None:
        """Gmail said the mailbox changed: read its history now (call from the loop)."""
        self._history_wake.set()

    def wake(self) -> None:
        """A wake-up for this account (an action queued, or Gmail's push, which arrives
        the same way across processes): drain the outbox and read the history."""
        super().wake()
        self.pushed()

    # --- the Gmail session ------------------------------------------------------------

    async def _session(self, *, follow: bool) -> None:
        await self._event(AccountEvent.START)
        account = await self.db.read(lambda s: mail.account_info(s, self.account_id))
        self._secret = account.secret
        self._oauth = bool(account.settings.get("oauth_provider"))
        opts = self.options.gmail
        client = GmailClient(
            self._access_token,
            refresh_access_token=self._refreshed_token,
            base_url=opts.base_url,
            retry=opts.retry,
        )
        self._client = client
        sender = GmailSending(self.db, account, client)
        if account.settings.get("mode") == "one_way":
            # 1-way: nothing is read from the mailbox; sends still go out through Gmail.
            await client.get_profile()
            await self._event(AccountEvent.CONNECTED_LIVE)
            self._healthy("session")
            await self._drain_gmail(None, sender, follow=follow)
            return
        layout = await self._layout(account, client)
        ingest = self.ingest = GmailIngest(self.db, account, client, layout)
        importer = Importer(
            self.db,
            client,
            ingest,
            since=window_start(account, self.options.sync.history_days),
        )
        importer.page_size = max(1, min(PAGE, self.options.sync.batch_size))
        try:
            await self._follow(account, client, layout, importer, sender, follow=follow)
        finally:
            importer.close()

    async def _follow(
        self,
        account: mail.AccountInfo,
        client: GmailClient,
        layout: Layout,
        importer: Importer,
        sender: GmailSending,
        *,
        follow: bool,
    ) -> None:
        home = layout.all_mail
        if home.highestmodseq is None:
            home = await importer.start(home.id)
        await self._event(
            AccountEvent.CONNECTED_LIVE
            if home.import_complete
            else AccountEvent.CONNECTED_IMPORTING
        )
        self._healthy("session")
        syncback = GmailSyncBack(self.db, account, client, layout)
        if not follow:
            home = await self._round(importer, layout, home, ALL_PAGES)
            await self._event(AccountEvent.IMPORT_FINISHED)
            await self._drain_gmail(syncback, sender, follow=False)
            # What the drain did (a sent message's SENT copy, labels) comes back now.
            await self._round(importer, layout, home, ALL_PAGES)
            return
        self._down.clear()

        async def follow_mailbox() -> None:
            current = home
            while True:
                current = await self._round(importer, layout, current, IMPORT_SLICES_PER_ROUND)
                await self._back_up("sync")
                self._healthy("sync")
                self._changed()
                if not current.import_complete:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._history_wake.wait(), self.options.poll_interval)
                self._history_wake.clear()

        async def drain() -> None:
            await self._back_up("outbox")
            self._healthy("outbox")
            await self._drain_gmail(syncback, sender, follow=True)

        await _gather_or_fail(
            [
                self._keep_going("sync", follow_mailbox),
                self._keep_going("outbox", drain),
                self._keep_watching(client),
            ]
        )

    async def _layout(self, account: mail.AccountInfo, client: GmailClient) -> Layout:
        listed = account.settings.get("folders")
        chosen = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
        label_ids: dict[str, str] = {}
        if chosen:
            by_name = {lab.name: lab.id for lab in await client.list_labels() if lab.type == "user"}
            label_ids = {name: by_name[name] for name in chosen if name in by_name}
        wanted = wanted_folders(label_ids)
        account_id = self.account_id
        folders = await self.db.write(lambda s: mail.ensure_folders(s, account_id, wanted))
        return Layout.of(folders, label_ids)

    async def _round(
        self, importer: Importer, layout: Layout, home: mail.FolderInfo, pages: int
    ) -> mail.FolderInfo:
        """History since the cursor, then up to ``pages`` pages of the import."""
        assert self.ingest is not None and self._client is not None
        if home.highestmodseq is None:
            home = await importer.start(home.id)
        assert home.highestmodseq is not None
        try:
            history_id, _ = await catch_up(
                self._client, self.ingest, home.highestmodseq, not_before=importer.since
            )
        except HistoryExpired as exc:
            log.warning("account %s: %s", self.account_id, exc.message)
            home = await importer.start(home.id)
            await self._event(AccountEvent.CONNECTED_IMPORTING)
            history_id = home.highestmodseq or 0
        home = replace(home, highestmodseq=history_id)
        importing = not home.import_complete
        for _ in range(pages):
            if home.import_complete:
                break
            home, _ = await importer.slice(home)
        if importing and home.import_complete:
            await importer.verify_inbox()
            await self._event(AccountEvent.IMPORT_FINISHED)
        await self._heartbeat(layout)
        self.rounds += 1
        return home

    async def _heartbeat(self, layout: Layout) -> None:
        """Every folder was compared with Gmail just now (the status's lag reads it);
        recorded at most every HEARTBEAT_EVERY seconds, as for IMAP folders: a commit
        per quiet round would make idle accounts cost the database."""
        now = time.monotonic()
        if self._last_heartbeat is not None and now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        self._last_heartbeat = now
        steps = [mail.FolderStep(f.id, import_complete=True) for f in layout.by_label.values()]
        steps.append(mail.FolderStep(layout.all_mail.id))
        account_id = self.account_id
        await self.db.write(lambda s: remote.apply_steps(s, account_id, steps))

    async def _keep_going(self, loop: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body``; after a network or database failure, again after this loop's
        backoff (the other loop goes on). An auth failure ends the session (paused)."""
        while True:
            try:
                await body()
                return
            except RETRYABLE as exc:
                if isinstance(exc, AuthFailed):
                    raise
                self._down.add(loop)
                await self._retry_after(loop, as_error(exc))

    async def _back_up(self, loop: str) -> None:
        if loop in self._down:
            await self._reconnected(loop)

    async def _keep_watching(self, client: GmailClient) -> None:
        """``users.watch`` now and daily; push is an accelerator, the poll the truth, so
        a watch Gmail refuses is logged and tried again later, never fatal."""
        topic = self.options.gmail.push_topic
        if not topic:
            return
        while True:
            wait = self.options.gmail.watch_renewal
            try:
                watch = await client.watch(topic)
                log.info(
                    "account %s: Gmail push on %s until %s",
                    self.account_id,
                    topic,
                    watch.expiration,
                )
            except ProviderError as exc:
                if isinstance(exc, AuthFailed):
                    raise
                log.warning("account %s: Gmail push not set up: %s", self.account_id, exc.message)
                wait = min(wait, 3600.0)
            await asyncio.sleep(wait)

    # --- the outbox ---------------------------------------------------------------------

    async def _drain_gmail(
        self, syncback: GmailSyncBack | None, sender: GmailSending, *, follow: bool
    ) -> None:
        def done() -> None:
            self._healthy("outbox")
            self._changed()

        await drain_outbox(
            self.db,
            self.account_id,
            lambda action: self._run_gmail_action(syncback, sender, action),
            self._outbox_wake,
            follow=follow,
            on_done=done,
        )

    async def _run_gmail_action(
        self, syncback: GmailSyncBack | None, sender: GmailSending, action: outbox.Action
    ) -> None:
        try:
            if action.kind == "sync" and syncback is not None:
                await syncback.run(action)
            elif action.kind == "send":
                await sender.run(action)
            else:
                raise InvalidInput(f"unknown action kind {action.kind!r}")
        except StorageError:
            raise  # not the action's fault: requeued when the drain starts again
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
            if isinstance(exc, AuthFailed):
                raise

    # --- tokens and clients -------------------------------------------------------------

    async def _access_token(self) -> str:
        token = await self._fresh_token()
        if token is None:
            assert self._secret is not None
            token = self.box.open(self._secret).get("oauth2_token")
        if not token:
            raise AuthFailed(
                "this Google account has no access token",
                hint="connect it again with Google in Settings → Email",
            )
        self._access = token
        return token

    async def _refreshed_token(self) -> str:
        """Gmail refused the token: a new one (once); without OAuth, the same one, so
        the refusal stands and pauses the account."""
        token = await self._fresh_token(refused=self._access)
        if token is None:
            return self._access or ""
        self._access = token
        return token

    async def _close_clients(self) -> None:
        await super()._close_clients()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
