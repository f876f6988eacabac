"""What the sync workers of mailboxes reached through a provider's API share.

Two loops share one HTTP client (the API has no per-connection state):

- sync: rounds of the provider's changes (with a few pages of the import while it
  lasts); between rounds it waits for a push (:meth:`ApiMailboxWorker.pushed`) or the
  safety poll (``poll_interval``), whichever comes first;
- outbox: CRM actions and sends (:func:`crmail.sync.drain.run_outbox_action`), in
  order, each recorded before the next;

beside a third task of the provider's own that keeps its push set up. Retries,
backoff, auth pauses and the account's status are those of the IMAP worker
(:class:`crmail.sync.worker.AccountWorker`); a network or database failure retries
the loop it hit after that loop's backoff, the other loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from crmail.crypto import SecretBox
from crmail.domain.account import AccountEvent
from crmail.errors import AuthFailed, CrmailError
from crmail.storage import mail, outbox
from crmail.storage.db import Database
from crmail.sync.drain import drain_outbox, run_outbox_action
from crmail.sync.worker import (
    IMPORT_SLICES_PER_ROUND,
    RETRYABLE,
    AccountWorker,
    WorkerOptions,
    _gather_or_fail,
    as_error,
)

#: import pages per round of `run_once` (the CLI's `sync --once`): all of them
ALL_PAGES = 1_000_000


class ApiClient(Protocol):
    async def aclose(self) -> None: ...


class ActionRunner(Protocol):
    async def run(self, action: outbox.Action) -> None: ...


ClientT = TypeVar("ClientT", bound=ApiClient)


class ApiMailboxWorker(AccountWorker, Generic[ClientT]):
    #: the identity provider, in the words of a missing token ("Google", "Microsoft")
    signs_in_with = ""

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
        self._mailbox_wake = asyncio.Event()
        self._client: ClientT | None = None
        self._access: str | None = None
        #: sync rounds done (a figure for tests: a push wakes a round before the poll)
        self.rounds = 0

    def pushed(self) -> None:
        """The provider said the mailbox changed: a round now (call from the loop)."""
        self._mailbox_wake.set()

    def wake(self) -> None:
        """A wake-up for this account (an action queued, or the provider's push, which
        arrives the same way across processes): drain the outbox and run a round."""
        super().wake()
        self.pushed()

    async def _start(self, new_client: Callable[[], ClientT]) -> tuple[mail.AccountInfo, ClientT]:
        """The session's start: the account read, its client made."""
        await self._event(AccountEvent.START)
        account = await self.db.read(lambda s: mail.account_info(s, self.account_id))
        self._secret = account.secret
        self._oauth = bool(account.settings.get("oauth_provider"))
        client = self._client = new_client()
        return account, client

    async def _one_way(
        self, probe: Callable[[], Awaitable[object]], sender: ActionRunner, *, follow: bool
    ) -> None:
        """1-way: nothing is read from the mailbox; sends still go out through the API."""
        await probe()
        await self._event(AccountEvent.CONNECTED_LIVE)
        self._healthy("session")
        await self._drain(None, sender, follow=follow)

    async def _once_or_follow(
        self,
        round_: Callable[[int], Awaitable[None]],
        importing: Callable[[], bool],
        syncback: ActionRunner,
        sender: ActionRunner,
        push: Callable[[], Coroutine[Any, Any, None]],
        *,
        follow: bool,
    ) -> None:
        """`sync --once` (everything, the outbox, then what the drain did comes back),
        or the two loops and the provider's push until the session ends."""
        if not follow:
            await round_(ALL_PAGES)
            await self._imported_once()
            await self._drain(syncback, sender, follow=False)
            # What the drain did (a sent message's Sent copy, moves, labels) comes back now.
            await round_(ALL_PAGES)
            return
        self._down.clear()

        async def follow_mailbox() -> None:
            while True:
                await round_(IMPORT_SLICES_PER_ROUND)
                await self._back_up("sync")
                self._healthy("sync")
                self._changed()
                if importing():
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._mailbox_wake.wait(), self.options.poll_interval)
                self._mailbox_wake.clear()

        async def drain() -> None:
            await self._back_up("outbox")
            self._healthy("outbox")
            await self._drain(syncback, sender, follow=True)

        await _gather_or_fail(
            [self._keep_going("sync", follow_mailbox), self._keep_going("outbox", drain), push()]
        )

    async def _imported_once(self) -> None:
        """`sync --once` read the whole mailbox (a provider may record it as an event)."""

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

    async def _drain(
        self, syncback: ActionRunner | None, sender: ActionRunner, *, follow: bool
    ) -> None:
        def done() -> None:
            self._healthy("outbox")
            self._changed()

        async def run(action: outbox.Action) -> None:
            await run_outbox_action(
                self.db,
                self.account_id,
                action,
                syncback.run if syncback is not None else None,
                sender.run,
            )

        await drain_outbox(
            self.db, self.account_id, run, self._outbox_wake, follow=follow, on_done=done
        )

    # --- tokens and clients -------------------------------------------------------------

    async def _access_token(self) -> str:
        token = await self._fresh_token()
        if token is None:
            assert self._secret is not None
            token = self.box.open(self._secret).get("oauth2_token")
        if not token:
            raise AuthFailed(
                f"this {self.signs_in_with} account has no access token",
                hint=f"connect it again with {self.signs_in_with} in Settings → Email",
            )
        self._access = token
        return token

    async def _refreshed_token(self) -> str:
        """The provider refused the token: a new one (once); without OAuth, the same
        one, so the refusal stands and pauses the account."""
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
