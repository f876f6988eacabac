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
import logging
import time
from dataclasses import replace

from crmail.domain.account import AccountEvent
from crmail.errors import AuthFailed, HistoryExpired, ProviderError
from crmail.providers.gmail import GmailClient
from crmail.storage import mail, remote
from crmail.sync.api_worker import ApiMailboxWorker
from crmail.sync.gmail.changes import catch_up
from crmail.sync.gmail.importer import PAGE, Importer, window_start
from crmail.sync.gmail.ingest import GmailIngest
from crmail.sync.gmail.labels import Layout, wanted_folders
from crmail.sync.gmail.sending import GmailSending
from crmail.sync.gmail.syncback import GmailSyncBack

log = logging.getLogger(__name__)

#: seconds between two records of "checked, nothing changed" (folders' last_sync_at)
HEARTBEAT_EVERY = 300.0


class GmailWorker(ApiMailboxWorker[GmailClient]):
    signs_in_with = "Google"

    #: the session's ingest (tests and the bench read its figures)
    ingest: GmailIngest | None = None
    _last_heartbeat: float | None = None

    # --- the Gmail session ------------------------------------------------------------

    async def _session(self, *, follow: bool) -> None:
        opts = self.options.gmail
        account, client = await self._start(
            lambda: GmailClient(
                self._access_token,
                refresh_access_token=self._refreshed_token,
                base_url=opts.base_url,
                retry=opts.retry,
            )
        )
        sender = GmailSending(self.db, account, client)
        if account.settings.get("mode") == "one_way":
            await self._one_way(client.get_profile, sender, follow=follow)
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

        async def round_(pages: int) -> None:
            nonlocal home
            home = await self._round(importer, layout, home, pages)

        await self._once_or_follow(
            round_,
            lambda: not home.import_complete,
            syncback,
            sender,
            lambda: self._keep_watching(client),
            follow=follow,
        )

    async def _imported_once(self) -> None:
        await self._event(AccountEvent.IMPORT_FINISHED)

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
