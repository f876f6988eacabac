"""Waiting for changes: IDLE (or NOOP polling) in the selected mailbox, NOTIFY for others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

from crmail.errors import ProtocolError
from crmail.providers.imap.arguments import mailbox_arg
from crmail.providers.imap.connection import Literal
from crmail.providers.imap.error_mapping import check
from crmail.providers.imap.fetch_parser import parse_generic
from crmail.providers.imap.responses import name_of
from crmail.providers.imap.results import ServerEvent
from crmail.providers.imap.session import ImapSession

log = logging.getLogger(__name__)

#: Burst coalescing window after the first IDLE event.
IDLE_COALESCE = 0.02
#: Polling period when the server has no IDLE.
NOOP_POLL_INTERVAL = 1.0


class WatchOps(ImapSession):
    """Waiting for news: events of the selected mailbox, NOTIFY notices of others."""

    async def idle(self, timeout: float) -> list[ServerEvent]:
        """Wait up to ``timeout`` s for mailbox changes; returns them (empty on timeout)."""
        async with self._lock:
            events = self._drain_events()
            if events or self._conn.notices:
                return events
            if not self.has("IDLE"):
                return await self._poll(timeout)
            conn = self._conn
            await conn.idle_start()
            try:
                if await conn.idle_wait(timeout):
                    # Deliveries come in bursts (EXISTS + RECENT + FETCH): gather them.
                    await conn.idle_wait_more(IDLE_COALESCE)
            finally:
                if not conn.closed:
                    done = await conn.idle_done()
                    check(done, "IDLE")
            return self._drain_events()

    async def _poll(self, timeout: float) -> list[ServerEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            res = await self._cmd("NOOP")
            check(res, "NOOP")
            events = self._drain_events()
            remaining = deadline - loop.time()
            if events or self._conn.notices or remaining <= 0:
                return events
            await asyncio.sleep(min(NOOP_POLL_INTERVAL, remaining))

    async def notify(self, folders: Sequence[str | bytes]) -> bool:
        """Be told of changes in ``folders`` too, not only in the selected mailbox
        (RFC 5465 NOTIFY): one connection idling in INBOX then watches them all. News
        of them ends :meth:`idle` and is read with :meth:`notified`. False when the
        server has no NOTIFY (or refused it): the caller looks with STATUS instead."""
        if not folders or not self.has("NOTIFY"):
            return False
        names = [mailbox_arg(f) for f in folders]
        if any(isinstance(n, Literal) for n in names):
            return False  # a name that needs a literal: not worth the syntax
        events = "(MessageNew MessageExpunge FlagChange)"
        watched = b"(MAILBOXES (" + b" ".join(cast(list[bytes], names)) + b") " + events.encode()
        async with self._lock:
            res = await self._cmd("NOTIFY", "SET", f"(SELECTED {events})", watched + b")")
        if not res.ok:
            log.info("%s refused NOTIFY: %s", self.settings.host, res.text)
        return res.ok

    def notified(self) -> set[str]:
        """The mailboxes (other than the selected one) the server said changed since
        the last call, by NOTIFY."""
        names: set[str] = set()
        q = self._conn.notices
        while q:
            resp = q.popleft()
            try:
                parsed = parse_generic(resp.records)
            except ProtocolError:
                continue
            if parsed:
                names.add(name_of(parsed[0]))
        return names
