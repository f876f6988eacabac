"""Waking another process: PostgreSQL LISTEN/NOTIFY.

An action queued through the API of one process must wake the drain of the process
that owns the account, which may be another one (``crmail run --role api`` beside
``--role sync`` processes). Every process publishes its wake-ups on one channel; every
sync process listens and wakes what it runs. On SQLite there is one process, and the
in-process wake-up (:class:`crmail.sync.service.SyncService`) is all there is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Callable, Iterable

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crmail.errors import CrmailError
from crmail.storage.db import Database

log = logging.getLogger(__name__)

CHANNEL = "crmail_wake"


def wake_message(account_ids: list[int], default_provider: bool) -> str:
    """The NOTIFY payload for queued actions ("outbox:1,2", "outbox:*" when long)."""
    ids = ",".join(str(i) for i in account_ids)
    if len(ids) > 4000:
        ids = "*"  # NOTIFY payloads are bounded: wake every drain instead
    return f"outbox:{ids}" + (";default" if default_provider else "")


def parse_wake_message(payload: str) -> tuple[list[int] | None, bool]:
    """(account ids, default provider); ids None: every account."""
    body, _, default = payload.removeprefix("outbox:").partition(";")
    if body == "*":
        return None, default == "default"
    return [int(i) for i in body.split(",") if i.strip().isdigit()], default == "default"


class PgWakeups:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Off the caller's thread (an API handler, the event loop): a wake-up is a hint,
        # the drains also look on their own every half minute.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="notify")

    def publish(self, payload: str) -> None:
        self._pool.submit(self._send, payload)

    def _send(self, payload: str) -> None:
        try:
            self.db.run(
                lambda s: s.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": payload},
                )
            )
        except CrmailError as exc:
            log.warning("could not wake the other processes: %s", exc)

    async def listen(self, on_notice: Callable[[str], None]) -> None:
        """Deliver every notice to ``on_notice`` until cancelled; reconnects on failure.
        After a reconnect everything is woken once: notices sent meanwhile are lost."""
        import psycopg

        url = make_url(self.db.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    on_notice("accounts")
                    on_notice("outbox:*;default")
                    delay = 1.0
                    async for notice in conn.notifies():
                        on_notice(notice.payload)
            except (OSError, psycopg.Error) as exc:
                log.warning("listening for wake-ups failed (%s); again in %.0fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 30.0)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Broadcast:
    """The sync control of a process that runs no sync (``--role api``): it tells the
    processes that do."""

    def __init__(self, wakeups: PgWakeups | None) -> None:
        self.wakeups = wakeups

    def accounts_changed(self) -> None:
        if self.wakeups is not None:
            self.wakeups.publish("accounts")

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        if self.wakeups is not None:
            self.wakeups.publish(wake_message(list(account_ids), default_provider))
