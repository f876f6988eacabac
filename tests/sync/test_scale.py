"""A thousand accounts in one process, cheaply: what each idle account costs.

One IMAP connection per idle account (counted by the server, ``doveadm who``) that
still notices changes in the other folders; an outbox action wakes its worker at once
on a connection opened for the work; a round that finds nothing commits nothing; one
TLS context per trust store, shared by every connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event, select

from crmail.providers.imap import ImapClient
from crmail.providers.tls import client_context
from crmail.services import Services
from crmail.storage import actions, crm, mail
from crmail.storage.models import Message, OutboxAction, Placement
from crmail.sync import worker as worker_module
from crmail.sync.folders import discover
from crmail.sync.inbound import FolderSync
from crmail.sync.worker import AccountWorker, WorkerOptions, imap_settings
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount
from tests.servers.faultproxy import FaultProxy
from tests.sync.test_inbound import FAST, count, wait_for
from tests.sync.test_two_way import folders_on_server, thread_of

pytestmark = pytest.mark.db


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def sessions(dovecot: Dovecot, user: str) -> int:
    """The user's IMAP sessions, as the server counts them."""
    return sum(
        1 for line in dovecot.doveadm("who", "-1").splitlines()[1:] if line.split()[0] == user
    )


class Following:
    """A worker following one account, woken by queued actions as `crmail run` does."""

    def __init__(self, services: Services, account: int, options: WorkerOptions) -> None:
        self.services = services
        self.worker = AccountWorker(services.db, services.box, account, options)
        services.sync = self  # type: ignore[assignment]
        self.task = asyncio.create_task(self.worker.run())

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: object, default_provider: bool = False) -> None:
        self.worker.wake()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def me(services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount) -> int:
    """A user whose mailbox holds one message from a known contact."""
    world.contact("ivy@client.test")
    dovecot.deliver(
        mailbox.email, message("ivy@client.test", mailbox.email, "hello", msgid="<h0@client.test>")
    )
    return world.user(mailbox.email)


def sent_copy(box: MailboxAccount, tag: str) -> bytes:
    return message(box.email, "ivy@client.test", f"re {tag}", msgid=f"<{tag}@example.test>")


@pytest.mark.parametrize("notify", [True, False], ids=["notify", "status-between-idles"])
async def test_an_idle_account_holds_one_connection_and_still_sees_its_other_folders(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    me: int,
    notify: bool,
) -> None:
    if notify:
        # The other folders' own look is minutes away: only NOTIFY can tell in time.
        account = world.connect(me, mailbox)
        options = replace(FAST, poll_interval=60.0)
    else:  # a server without NOTIFY: a STATUS of the other folders between IDLEs
        account = world.connect(me, mailbox, imap_disabled_caps=["NOTIFY"])
        options = FAST
    run = Following(services, account, options)
    try:
        await wait_for(lambda: count(services, Placement) == 1, 20)
        await wait_for(lambda: sessions(dovecot, mailbox.email) == 1)
        # Mail filed in Sent and Archive by another client reaches the CRM over that
        # one connection, and no other is opened for it.
        dovecot.append(mailbox.email, "Sent", sent_copy(mailbox, "s1"))
        await wait_for(lambda: stored("s1@example.test", services), 20)
        dovecot.doveadm("move", "-u", mailbox.email, "Archive", "mailbox", "INBOX", "all")
        await wait_for(lambda: placed_folder(services, "h0@client.test") == "Archive", 20)
        assert sessions(dovecot, mailbox.email) == 1
    finally:
        await run.stop()


def stored(msgid: str, services: Services) -> bool:
    return services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == msgid)) is not None
    )


def placed_folder(services: Services, msgid: str) -> str | None:
    from crmail.storage.models import Folder

    names = services.db.run(
        lambda s: list(
            s.scalars(
                select(Folder.name)
                .join(Placement, Placement.folder_id == Folder.id)
                .join(Message, Message.id == Placement.message_id)
                .where(Message.message_id == msgid)
            )
        )
    )
    return names[0] if len(names) == 1 else None


async def test_a_queued_action_wakes_the_worker_on_a_connection_opened_for_it(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    me: int,
) -> None:
    with FaultProxy(dovecot.host, dovecot.imaps_port) as proxy:
        account = world.connect(me, mailbox, imap_port=proxy.port)
        # The drain's own look at the queue is minutes away: only the wake-up can run it.
        run = Following(services, account, replace(FAST, work_linger=0.5))
        actor = services.db.run(lambda s: crm.get_user(s, world.workspace_id, me))
        try:
            await wait_for(lambda: count(services, Placement) == 1, 20)
            await wait_for(lambda: proxy.open_connections == 1)
            assert sessions(dovecot, mailbox.email) == 1
            before = proxy.accepted
            await services.act(
                lambda s: actions.done(s, actor, thread_of(services, "h0@client.test"))
            )
            await wait_for(
                lambda: (
                    folders_on_server(dovecot, mailbox.email, "<h0@client.test>") == ["Archive"]
                ),
                20,
            )
            await wait_for(lambda: count(services, OutboxAction, OutboxAction.state == "done") == 1)
            assert proxy.accepted == before + 1  # a connection for the work
            # Closed again once the work is done: back to one.
            await wait_for(lambda: proxy.open_connections == 1)
            await wait_for(lambda: sessions(dovecot, mailbox.email) == 1)
        finally:
            await run.stop()


@contextmanager
def commits(services: Services) -> Iterator[list[int]]:
    done: list[int] = []

    def count_commit(conn: object) -> None:
        done.append(1)

    event.listen(services.db.engine, "commit", count_commit)
    try:
        yield done
    finally:
        event.remove(services.db.engine, "commit", count_commit)


async def test_a_round_that_finds_nothing_commits_nothing(
    services: Services, world: World, mailbox: MailboxAccount, me: int
) -> None:
    account = world.connect(me, mailbox)
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    info = services.db.run(lambda s: mail.account_info(s, account))
    folders = services.db.run(lambda s: mail.folders(s, account))
    client = await ImapClient.connect(imap_settings(info, services.box))
    try:
        for probe in (True, False):  # STATUS first (other folders), or IDLE's SELECT (INBOX)
            sync = FolderSync(services.db, info, client, FAST.sync, status_probe=probe)
            with commits(services) as done:
                for _ in range(3):
                    for f in folders:
                        assert await sync.round(f) == f
            assert done == []
            assert set(sync.checked_at) == {f.id for f in folders}  # known, in memory
    finally:
        await client.close()


async def test_every_connection_with_one_trust_store_shares_one_tls_context(
    services: Services, dovecot: Dovecot, world: World
) -> None:
    boxes = [dovecot.add_user(f"tls{i}@example.test", f"pw-tls-{i}") for i in range(3)]
    clients = []
    for box in boxes:
        account = world.connect(world.user(box.email), box)
        info = services.db.run(lambda s, a=account: mail.account_info(s, a))
        clients.append(await ImapClient.connect(imap_settings(info, services.box)))
    try:
        contexts = {id(c._conn._writer.get_extra_info("sslcontext")) for c in clients}
        assert len(contexts) == 1
        assert contexts == {id(await client_context(boxes[0].ca_file))}
        assert await client_context(None) is await client_context(None)  # the system store
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize("big", [False, True], ids=["small-folders", "big-folders"])
async def test_the_other_folders_get_an_import_connection_only_when_they_hold_much_mail(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    me: int,
    big: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new account's Sent and Archive often hold little: a second TLS handshake and
    # login for them cost more than importing them on the watch connection.
    dovecot.append(mailbox.email, "Sent", sent_copy(mailbox, "s0"))
    if big:
        monkeypatch.setattr(worker_module, "OWN_IMPORT_CONNECTION_FROM", 0)
    with FaultProxy(dovecot.host, dovecot.imaps_port) as proxy:
        account = world.connect(me, mailbox, imap_port=proxy.port)
        run = Following(services, account, FAST)
        try:
            await wait_for(lambda: account_state(services, account) == "live", 20)
            assert stored("s0@example.test", services)
            assert stored("h0@client.test", services)
            assert proxy.accepted == (2 if big else 1)
        finally:
            await run.stop()


def account_state(services: Services, account: int) -> str:
    from crmail.storage.models import MailAccount

    return services.db.run(lambda s: s.get_one(MailAccount, account).state)


async def test_a_session_starting_over_known_folders_writes_none_of_them(
    services: Services, world: World, mailbox: MailboxAccount, me: int
) -> None:
    # A thousand accounts restarting made a thousand writes that changed nothing.
    account = world.connect(me, mailbox)
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    info = services.db.run(lambda s: mail.account_info(s, account))
    known = services.db.run(lambda s: mail.folders(s, account))
    client = await ImapClient.connect(imap_settings(info, services.box))
    try:
        with commits(services) as done:
            found = await discover(services.db, account, client, account=info)
        assert len(done) == 1  # the read of the known folders; no write transaction
        assert sorted(found, key=lambda f: f.id) == known
    finally:
        await client.close()
