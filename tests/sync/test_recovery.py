"""Recovery that stays fast, against the real Dovecot behind a proxy that breaks the network,
and against a database another connection holds locked.

- repeated drops: the account comes back to live each time, a Done reaches the server, and
  the backoff starts from the bottom again (it does not grow over the process's life);
- one dropped connection is reconnected alone, the others keep working;
- connections are opened together, not one after the other;
- an import over a link that never lasts long enough for a whole batch still finishes:
  the batch shrinks until it gets through;
- a database write refused (a lock held elsewhere) shows on the account's status with
  the reason, is retried, and the worker carries on by itself once the lock is gone;
- a worker that dies on an unexpected error is reported, recorded and restarted with a
  backoff, not in a tight loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from crmail.api import create_app
from crmail.config import Settings
from crmail.services import Services
from crmail.storage import actions, crm
from crmail.storage.models import Folder, MailAccount, Message, Placement
from crmail.sync.inbound import SyncOptions
from crmail.sync.service import SyncService
from crmail.sync.worker import AccountWorker, WorkerOptions
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount
from tests.servers.faultproxy import FaultProxy
from tests.sync.test_inbound import count, wait_for
from tests.sync.test_two_way import folders_on_server, thread_of

OPTIONS = WorkerOptions(
    sync=SyncOptions(batch_size=50),
    poll_interval=0.2,
    idle_timeout=5,
    min_backoff=0.05,
    max_backoff=2.0,
)


@pytest.fixture
def proxy(dovecot: Dovecot) -> Iterator[FaultProxy]:
    with FaultProxy(dovecot.host, dovecot.imaps_port) as p:
        yield p


class Running:
    """A worker following one account, the way `crmail run` does; also the services'
    sync control, so queued actions wake it."""

    def __init__(self, services: Services, account: int, options: WorkerOptions) -> None:
        self.services = services
        self.account = account
        self.worker = AccountWorker(
            services.db, services.box, account, options, problems=services.problems
        )
        services.sync = self  # type: ignore[assignment]
        self.task = asyncio.create_task(self.worker.run())

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: object, default_provider: bool = False) -> None:
        self.worker.wake()

    def state(self) -> str:
        return str(self.services.db.run(lambda s: s.get_one(MailAccount, self.account).state))

    def attempts(self) -> dict[str, int]:
        return {loop: b.attempt for loop, b in self.worker.backoff.items()}

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def ivy_mail(box: MailboxAccount, tag: str, body: str = "Hi there") -> bytes:
    return message("ivy@client.test", box.email, f"about {tag}", body, msgid=f"<{tag}@client.test>")


def messages(services: Services) -> int:
    return count(services, Message)


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


# --- the network ---------------------------------------------------------------------------


async def test_repeated_drops_come_back_live_with_the_backoff_at_the_bottom(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    proxy: FaultProxy,
) -> None:
    me = world.user(mailbox.email)
    world.contact("ivy@client.test")
    account = world.connect(me, mailbox, imap_port=proxy.port)
    faults = 4
    for i in range(faults):
        dovecot.deliver(mailbox.email, ivy_mail(mailbox, f"m{i}"))
    run = Running(services, account, OPTIONS)
    actor = services.db.run(lambda s: crm.get_user(s, world.workspace_id, me))
    try:
        await wait_for(lambda: run.state() == "live" and messages(services) == faults, 20)
        peaks = []
        for i in range(faults):
            # The server is unreachable for a while: every connection drops, reconnects
            # are refused, and the loops back off further with each refusal.
            proxy.refuse()
            proxy.drop_all()
            await wait_for(lambda: run.state() == "retrying")
            await wait_for(lambda: max(run.attempts().values(), default=0) >= 3)
            peaks.append(max(run.attempts().values()))
            proxy.refuse(False)  # the fault ends

            await services.act(
                lambda s, i=i: actions.done(s, actor, thread_of(services, f"m{i}@client.test"))
            )
            await wait_for(
                lambda i=i: (
                    folders_on_server(dovecot, mailbox.email, f"<m{i}@client.test>") == ["Archive"]
                ),
                20,
            )
            await wait_for(lambda: run.state() == "live")
            # Healthy again: the next blip waits the shortest time, however many came before.
            await wait_for(lambda: all(a == 0 for a in run.attempts().values()))
        assert "watch" in run.attempts()
        # Each fault started over from the bottom: the first went as deep as the last.
        assert max(peaks) - min(peaks) <= 2, peaks
        assert messages(services) == faults
    finally:
        await run.stop()


async def test_one_dropped_connection_is_reconnected_alone(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    proxy: FaultProxy,
) -> None:
    me = world.user(mailbox.email)
    world.contact("ivy@client.test")
    account = world.connect(me, mailbox, imap_port=proxy.port)
    drops = 3
    for i in range(drops + 1):
        dovecot.deliver(mailbox.email, ivy_mail(mailbox, f"d{i}"))
    run = Running(services, account, OPTIONS)
    actor = services.db.run(lambda s: crm.get_user(s, world.workspace_id, me))

    def archived(i: int) -> bool:
        return folders_on_server(dovecot, mailbox.email, f"<d{i}@client.test>") == ["Archive"]

    try:
        await wait_for(lambda: run.state() == "live" and messages(services) == drops + 1, 20)
        await wait_for(lambda: proxy.open_connections == 1)  # idle: the watch alone
        # A Done opens the outbox's connection, which stays for a while after.
        await services.act(
            lambda s: actions.done(s, actor, thread_of(services, f"d{drops}@client.test"))
        )
        await wait_for(lambda: archived(drops), 20)
        await wait_for(lambda: proxy.open_connections == 2)
        accepted = proxy.accepted
        for i in range(drops):
            proxy.drop_oldest()
            # Both connections are used: new mail (the watch), a Done (the outbox).
            dovecot.deliver(mailbox.email, ivy_mail(mailbox, f"new{i}"))
            await services.act(
                lambda s, i=i: actions.done(s, actor, thread_of(services, f"d{i}@client.test"))
            )
            await wait_for(lambda i=i: archived(i), 20)
            await wait_for(lambda i=i: messages(services) == drops + 1 + i + 1)
            await wait_for(lambda: proxy.open_connections == 2)
            # One connection lost, one new: the other was never closed and reopened.
            assert proxy.accepted == accepted + i + 1
        await wait_for(lambda: run.state() == "live")
    finally:
        await run.stop()


async def test_logins_are_paced_across_accounts(
    services: Services,
    world: World,
    dovecot: Dovecot,
    proxy: FaultProxy,
) -> None:
    """Many accounts starting together log in a few at a time (``connect_concurrency``):
    a thousand handshakes at once would time out."""
    boxes = [dovecot.add_user(f"paced{i}@example.test", f"pw-paced-{i}") for i in range(6)]
    ids = [world.connect(world.user(b.email), b, imap_port=proxy.port) for b in boxes]
    proxy.delay(0.3)  # a slow server: each connect takes a while
    options = replace(OPTIONS, connect_concurrency=2)
    runs = [Running(services, a, options) for a in ids]
    try:
        await wait_for(lambda: all(r.state() == "live" for r in runs), 60)
        assert proxy.peak_connecting == 2
    finally:
        for r in runs:
            await r.stop()


async def test_an_import_over_a_link_too_short_for_a_batch_still_finishes(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    proxy: FaultProxy,
) -> None:
    me = world.user(mailbox.email)
    world.contact("ivy@client.test")
    n = 120
    body = "A longer message body, line after line.\n" * 50  # ~2 KB each
    dovecot.seed_maildir(
        mailbox.email, "INBOX", [ivy_mail(mailbox, f"bulk{i}", body) for i in range(n)]
    )
    account = world.connect(me, mailbox, imap_port=proxy.port)
    # Every connection is cut after ~60 KB from the server: a batch of 50 messages
    # (~100 KB) can never arrive whole; a smaller one can.
    proxy.cut_after(60_000)
    run = Running(
        services, account, replace(OPTIONS, sync=SyncOptions(batch_size=50), max_backoff=0.2)
    )
    try:
        await wait_for(lambda: messages(services) == n, 120)
        await wait_for(lambda: run.state() == "live", 30)
    finally:
        await run.stop()
    ids = services.db.run(lambda s: list(s.scalars(select(Message.message_id))))
    assert sorted(ids) == sorted(f"bulk{i}@client.test" for i in range(n))
    assert count(services, Placement) == n
    done = services.db.run(
        lambda s: s.scalar(
            select(func.sum(Folder.import_done)).where(
                Folder.account_id == account, Folder.name == "INBOX"
            )
        )
    )
    assert done == n
    assert proxy.accepted > 3  # the link did break, many times


# --- the database --------------------------------------------------------------------------


@pytest.fixture
def impatient(settings: Settings) -> Iterator[Services]:
    """Services whose statements give up on a lock after 0.3 s (30 s by default)."""
    svc = Services.open(replace(settings, db_lock_timeout=0.3))
    try:
        yield svc
    finally:
        svc.close()


@contextmanager
def writes_locked(services: Services) -> Iterator[None]:
    """Another connection holds the database's write lock (SQLite) or locks the sync's
    tables against writes (PostgreSQL; reads go on)."""
    url = services.db.engine.url
    if services.db.is_sqlite:
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as pg:
        pg.execute("LOCK TABLE folders, mail_accounts, messages, outbox IN EXCLUSIVE MODE")
        yield
        pg.rollback()


def api_status(client: TestClient, token: str, account: int) -> dict[str, object]:
    r = client.get(f"/api/accounts/{account}/status", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_a_locked_database_shows_on_the_status_and_the_worker_carries_on(
    impatient: Services, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    services = impatient
    world = new_world(services)
    new = services.db.run(lambda s: crm.create_user(s, world.workspace_id, mailbox.email))
    world.contact("ivy@client.test")
    account = world.connect(new.user.id, mailbox)
    dovecot.deliver(mailbox.email, ivy_mail(mailbox, "before"))
    client = TestClient(create_app(services))
    run = Running(services, account, OPTIONS)
    try:
        await wait_for(lambda: run.state() == "live" and messages(services) == 1, 20)
        # Signed in before the lock (a token's first use of the minute is recorded).
        assert api_status(client, new.token, account)["state"] == "live"
        with writes_locked(services):
            dovecot.deliver(mailbox.email, ivy_mail(mailbox, "during"))

            def shows_the_lock() -> bool:
                st = api_status(client, new.token, account)
                return (
                    st["state"] == "retrying"
                    and st["last_error_code"] == "database_error"
                    and str(st["last_error"]).startswith("database is locked")
                )

            await wait_for(shows_the_lock, 20)
            assert messages(services) == 1
            assert not run.task.done()  # retrying, not dead
        # The lock is gone: nothing to do but wait.
        await wait_for(lambda: messages(services) == 2, 20)
        await wait_for(lambda: api_status(client, new.token, account)["last_error"] is None)
        assert api_status(client, new.token, account)["state"] == "live"
        assert count(services, Placement) == 2
    finally:
        await run.stop()


async def test_a_worker_that_dies_is_reported_and_restarted_with_backoff(
    services: Services, world: World, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    # A bug's stand-in: settings the worker cannot read (no IMAP host) crash it.
    account = world.connect(me, mailbox)
    services.db.run(
        lambda s: s.execute(
            update(MailAccount)
            .where(MailAccount.id == account)
            .values(settings={"imap_port": mailbox.tls_port})
        )
    )
    service = SyncService(
        services.db,
        services.box,
        replace(OPTIONS, min_backoff=0.2, max_backoff=0.4),
        scan_interval=0.05,
        problems=services.problems,
    )
    service.start()
    try:

        def recorded() -> tuple[str, str | None, str | None]:
            a = services.db.run(lambda s: s.get_one(MailAccount, account))
            return a.state, a.last_error_code, a.last_error

        await wait_for(lambda: recorded()[0] == "retrying" and recorded()[2] is not None)
        _, code, reason = recorded()
        assert code == "error" and "internal error" in str(reason) and "KeyError" in str(reason)
        assert services.problems[account].code == "error"
        # Restarted, and each death in a row waits longer: not one restart per scan.
        await wait_for(lambda: service._crashes[account].attempt >= 3)
        assert service._restart_at[account] > 0

        # The condition clears (settings repaired): the worker comes back by itself.
        cfg = {
            "imap_host": mailbox.host,
            "imap_port": mailbox.tls_port,
            "imap_security": "tls",
            "ca_file": mailbox.ca_file,
            "username": mailbox.email,
        }
        services.db.run(
            lambda s: s.execute(
                update(MailAccount).where(MailAccount.id == account).values(settings=cfg)
            )
        )
        await wait_for(lambda: recorded()[0] == "live", 20)
        await wait_for(lambda: account not in services.problems)
    finally:
        await service.stop()
