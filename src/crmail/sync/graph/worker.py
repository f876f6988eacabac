"""One Microsoft Graph account's sync worker: import, then follow the mailbox.

Two loops share one HTTP client (at most 4 requests in flight, as Graph allows per
mailbox; 429/503 wait out Retry-After):

- sync: each round is a delta round of every synced folder, with a few pages of the
  import while it lasts (:mod:`.rounds`); between rounds it waits for a change
  notification (:meth:`GraphWorker.pushed`) or the safety poll (``poll_interval``),
  whichever comes first;
- outbox: CRM actions as Graph calls (:mod:`.syncback`), sends through ``sendMail``
  (:mod:`.sending`), in order, each recorded before the next.

Retries, backoff, auth pauses and the account's status are those of the IMAP worker
(:class:`crmail.sync.worker.AccountWorker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from functools import cached_property

from crmail.domain.account import AccountEvent
from crmail.errors import AuthFailed, FolderMissing, ProviderError, ProviderRejected
from crmail.providers.graph import GraphClient, Subscription
from crmail.storage import graph_push, mail
from crmail.sync.api_worker import ApiMailboxWorker
from crmail.sync.graph.folders import WELL_KNOWN, Layout, wanted_folders
from crmail.sync.graph.ingest import GraphIngest
from crmail.sync.graph.rounds import Rounds, window_start
from crmail.sync.graph.sending import GraphSending
from crmail.sync.graph.syncback import GraphSyncBack

log = logging.getLogger(__name__)

#: what the subscription covers: the whole mailbox (a notification only wakes a delta
#: round of every synced folder)
SUBSCRIBED_RESOURCE = "me/messages"
#: a subscription Graph refused (endpoint unreachable from Microsoft, ...) is tried
#: again after this long; the safety poll follows the mailbox meanwhile
SUBSCRIBE_RETRY = 3600.0


class GraphWorker(ApiMailboxWorker[GraphClient]):
    signs_in_with = "Microsoft"

    #: the session's ingest (tests and the bench read its figures)
    ingest: GraphIngest | None = None

    @cached_property
    def _subscription_wake(self) -> asyncio.Event:
        """Set by any wake-up: a look at the subscription (made on first use)."""
        return asyncio.Event()

    def wake(self) -> None:
        """Any wake-up (an action queued, a notification, a lifecycle event the
        endpoint recorded): the outbox, a delta round, a look at the subscription."""
        super().wake()
        self._subscription_wake.set()

    async def _session(self, *, follow: bool) -> None:
        opts = self.options.graph
        account, client = await self._start(
            lambda: GraphClient(
                self._access_token,
                refresh_access_token=self._refreshed_token,
                base_url=opts.base_url,
                retry=opts.retry,
            )
        )
        sender = GraphSending(self.db, account, client)
        if account.settings.get("mode") == "one_way":
            await self._one_way(client.me, sender, follow=follow)
            return
        layout = await self._layout(account, client)
        ingest = self.ingest = GraphIngest(self.db, account, client, layout)
        rounds = Rounds(
            self.db,
            client,
            ingest,
            since=window_start(account, self.options.sync.history_days),
            page_size=opts.page_size,
        )
        await rounds.load()
        await self._event(
            AccountEvent.CONNECTED_IMPORTING if rounds.importing else AccountEvent.CONNECTED_LIVE
        )
        self._healthy("session")
        syncback = GraphSyncBack(self.db, account, client, layout)

        async def round_(pages: int) -> None:
            await self._round(rounds, pages)

        await self._once_or_follow(
            round_,
            lambda: rounds.importing,
            syncback,
            sender,
            lambda: self._keep_subscribed(client),
            follow=follow,
        )

    # --- push ------------------------------------------------------------------------------

    async def _keep_subscribed(self, client: GraphClient) -> None:
        """A change-notification subscription now, renewed before it expires, replaced
        when Graph removed it. Push is an accelerator and the poll the truth, so a
        subscription Graph refuses is logged and tried again later, never fatal."""
        url = self.options.graph.notification_url
        if not url:
            return
        while True:
            self._subscription_wake.clear()
            try:
                wait = await self._subscription_step(client, url)
            except ProviderError as exc:
                if isinstance(exc, AuthFailed):
                    raise
                log.warning("account %s: Graph push not set up: %s", self.account_id, exc.message)
                wait = SUBSCRIBE_RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscription_wake.wait(), max(wait, 60.0))

    async def _subscription_step(self, client: GraphClient, url: str) -> float:
        """Create, renew or keep the account's subscription: seconds until the next look."""
        account_id = self.account_id
        opts = self.options.graph
        stored = await self.db.read(lambda s: graph_push.of_account(s, account_id))
        now = dt.datetime.now(dt.UTC)
        if stored is not None and (
            stored.notification_url != url or stored.resource != SUBSCRIBED_RESOURCE
        ):
            # CRMAIL_PUBLIC_URL changed: the old one would post where nobody listens.
            with contextlib.suppress(ProviderError):
                await client.delete_subscription(stored.subscription_id)
            stored = None
        if stored is not None:
            renew_due = stored.expires_at - opts.subscription_life * (1 - opts.renew_at)
            if not stored.renew_requested and now < renew_due:
                return (renew_due - now).total_seconds()
            try:
                renewed = await client.renew_subscription(
                    stored.subscription_id, now + opts.subscription_life
                )
            except ProviderRejected:
                renewed = None  # gone (expired, removed): a new one below
            if renewed is not None:
                sub_id, expires = renewed.id, renewed.expiration
                await self.db.write(lambda s: graph_push.renewed(s, sub_id, expires))
                log.info("account %s: Graph push renewed until %s", account_id, expires)
                return self._until_renewal(renewed)
        client_state = secrets.token_urlsafe(48)
        created = await client.create_subscription(
            notification_url=url,
            resource=SUBSCRIBED_RESOURCE,
            expiration=now + opts.subscription_life,
            client_state=client_state,
            lifecycle_notification_url=url,
        )
        sealed = self.box.seal({"client_state": client_state})
        await self.db.write(
            lambda s: graph_push.save(
                s,
                account_id,
                subscription_id=created.id,
                resource=SUBSCRIBED_RESOURCE,
                notification_url=url,
                client_state=sealed,
                expires_at=created.expiration,
            )
        )
        log.info("account %s: Graph push on until %s", account_id, created.expiration)
        # Changes between the last round and the subscription's start came unannounced.
        self.pushed()
        return self._until_renewal(created)

    def _until_renewal(self, sub: Subscription) -> float:
        opts = self.options.graph
        due = sub.expiration - opts.subscription_life * (1 - opts.renew_at)
        return (due - dt.datetime.now(dt.UTC)).total_seconds()

    async def _layout(self, account: mail.AccountInfo, client: GraphClient) -> Layout:
        graph_ids: dict[str, str] = {}
        for well_known, (name, _) in WELL_KNOWN.items():
            try:
                found = (
                    await client.archive_folder()
                    if well_known == "archive"
                    else await client.folder(well_known)
                )
            except FolderMissing:
                continue
            graph_ids[name] = found.id
        listed = account.settings.get("folders")
        chosen = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
        if chosen:
            by_name = {f.display_name: f.id for f in (await client.folders_delta()).folders}
            graph_ids.update({n: by_name[n] for n in chosen if n in by_name})
        wanted = [w for w in wanted_folders(chosen) if w[0] in graph_ids]
        account_id = self.account_id
        folders = await self.db.write(lambda s: mail.ensure_folders(s, account_id, wanted))
        return Layout.of(folders, graph_ids)

    async def _round(self, rounds: Rounds, pages: int) -> None:
        importing = rounds.importing
        await rounds.round(pages)
        if importing and not rounds.importing:
            await self._event(AccountEvent.IMPORT_FINISHED)
        self.rounds += 1
