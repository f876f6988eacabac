"""IMAP specifics of CRM actions: queued read/unread collapsing before an inbound round,
Trash and folder names, snooze, a missing Archive, attachment limits. The rules common to
every provider are in tests/sync/contract/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crmail.services import Services
from crmail.storage import actions, crm
from crmail.storage.models import InboxItem, Message, OutboxAction, Placement, TimelineEntry
from crmail.sync.worker import AccountWorker
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount
from tests.sync.test_inbound import FAST, count, server_flags, wait_for


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def user(services: Services, world: World, user_id: int) -> crm.UserInfo:
    return services.db.run(lambda s: crm.get_user(s, world.workspace_id, user_id))


def thread_of(services: Services, msgid: str) -> int:
    return services.db.run(
        lambda s: s.scalar(select(Message.thread_id).where(Message.message_id == msgid))
    )


def item_state(services: Services, user_id: int, msgid: str) -> tuple[str, bool]:
    return tuple(
        services.db.run(
            lambda s: s.execute(
                select(InboxItem.state, InboxItem.is_read)
                .join(Message, Message.id == InboxItem.message_id)
                .where(InboxItem.user_id == user_id, Message.message_id == msgid)
            ).one()
        )
    )  # type: ignore[return-value]


def folders_on_server(dovecot: Dovecot, user: str, msgid: str) -> list[str]:
    out = dovecot.doveadm(
        "fetch", "-u", user, "mailbox", "mailbox", "*", "header", "Message-ID", msgid
    )
    return sorted(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("mailbox:")
    )


class Running:
    """A worker following one account, the way `crmail run` does."""

    def __init__(self, services: Services, account: int) -> None:
        self.worker = AccountWorker(services.db, services.box, account, FAST)
        self.task = asyncio.create_task(self.worker.run())
        services.sync = self  # type: ignore[assignment]
        self.services = services
        self.account = account

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: object, default_provider: bool = False) -> None:
        self.worker.wake()

    async def live(self) -> None:
        from crmail.storage.models import MailAccount

        await wait_for(
            lambda: (
                self.services.db.run(lambda s: s.get_one(MailAccount, self.account).state) == "live"
            )
        )

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def setup(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> AsyncIterator[tuple[int, int, Running]]:
    me = world.user(mailbox.email)
    world.contact("ivy@client.test")
    account = world.connect(me, mailbox)
    for i in range(3):
        dovecot.deliver(
            mailbox.email,
            message("ivy@client.test", mailbox.email, f"topic {i}", msgid=f"<i{i}@client.test>"),
        )
    run = Running(services, account)
    await run.live()
    await wait_for(lambda: count(services, InboxItem, InboxItem.state == "open") == 3)
    yield me, account, run
    await run.stop()


async def test_read_unread_both_ways_without_flip_flop(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    setup: tuple[int, int, Running],
) -> None:
    me, account, run = setup
    tid = thread_of(services, "i1@client.test")
    u = user(services, world, me)
    # Queue read then unread while the worker cannot drain: one collapsed action remains.
    await run.stop()
    services.db.run(lambda s: actions.set_read(s, u, tid, True))
    services.db.run(lambda s: actions.set_read(s, u, tid, False))
    pending = services.db.run(
        lambda s: s.scalars(select(OutboxAction).where(OutboxAction.state == "pending")).all()
    )
    assert len(pending) == 1
    assert pending[0].payload["add"] == [] and pending[0].payload["remove"] == ["\\Seen"]
    # Meanwhile another client reads it on the server.
    dovecot.doveadm(
        "flags",
        "add",
        "-u",
        mailbox.email,
        "\\Seen",
        "mailbox",
        "INBOX",
        "header",
        "Message-ID",
        "<i1@client.test>",
    )
    # An inbound sync that runs before the drain must not flip the CRM state.
    from crmail.providers.imap import ImapClient
    from crmail.storage import mail
    from crmail.sync.inbound import FolderSync, SyncOptions
    from crmail.sync.worker import imap_settings

    info = services.db.run(lambda s: mail.account_info(s, account))
    client = await ImapClient.connect(imap_settings(info, services.box))
    inbox = next(
        f for f in services.db.run(lambda s: mail.folders(s, account)) if f.name == "INBOX"
    )
    await FolderSync(services.db, info, client, SyncOptions()).round(inbox)
    await client.logout()
    assert item_state(services, me, "i1@client.test") == ("open", False)
    # The drain makes the server agree with the CRM.
    run2 = Running(services, account)
    try:
        await wait_for(
            lambda: "\\Seen" not in server_flags(dovecot, mailbox.email)["<i1@client.test>"]
        )
        # and reading it elsewhere later is reflected again
        dovecot.doveadm(
            "flags",
            "add",
            "-u",
            mailbox.email,
            "\\Seen",
            "mailbox",
            "INBOX",
            "header",
            "Message-ID",
            "<i1@client.test>",
        )
        await wait_for(lambda: item_state(services, me, "i1@client.test") == ("open", True))
    finally:
        await run2.stop()


async def test_delete_and_move_reach_the_server_and_keep_the_record(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    setup: tuple[int, int, Running],
) -> None:
    me, _, _ = setup
    u = user(services, world, me)
    mid = services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == "i2@client.test"))
    )
    await services.act(lambda s: actions.delete_message(s, u, mid))
    await wait_for(
        lambda: folders_on_server(dovecot, mailbox.email, "<i2@client.test>") == ["Trash"]
    )
    assert item_state(services, me, "i2@client.test")[0] == "archived"
    await wait_for(lambda: count(services, OutboxAction, OutboxAction.state == "done") == 1)
    assert count(services, TimelineEntry, TimelineEntry.message_id == mid) == 1

    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Clients")
    other = services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == "i0@client.test"))
    )
    await services.act(lambda s: actions.move_message(s, u, other, "Clients"))
    await wait_for(
        lambda: folders_on_server(dovecot, mailbox.email, "<i0@client.test>") == ["Clients"]
    )
    # a folder that does not exist: a clear, permanent failure, nothing lost
    third = services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == "i1@client.test"))
    )
    await services.act(lambda s: actions.move_message(s, u, third, "Nope"))
    await wait_for(lambda: count(services, OutboxAction, OutboxAction.state == "failed") == 1)
    err = services.db.run(
        lambda s: s.scalar(select(OutboxAction.last_error).where(OutboxAction.state == "failed"))
    )
    assert "Nope" in err
    assert folders_on_server(dovecot, mailbox.email, "<i1@client.test>") == ["INBOX"]


async def test_expunge_from_trash(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("kim@client.test")
    account = world.connect(me, mailbox, folders=["Trash"])
    dovecot.append(
        mailbox.email,
        "Trash",
        message("kim@client.test", mailbox.email, "old", msgid="<k0@client.test>"),
    )
    run = Running(services, account)
    try:
        await run.live()
        await wait_for(lambda: count(services, Placement) == 1)
        mid = services.db.run(lambda s: s.scalar(select(Message.id)))
        await services.act(lambda s: actions.delete_message(s, user(services, world, me), mid))
        await wait_for(lambda: folders_on_server(dovecot, mailbox.email, "<k0@client.test>") == [])
        await wait_for(lambda: count(services, Placement) == 0)
        assert count(services, Message) == 1
    finally:
        await run.stop()


async def test_snooze_leaves_and_comes_back(
    services: Services, world: World, setup: tuple[int, int, Running]
) -> None:
    me, _, _ = setup
    u = user(services, world, me)
    tid = thread_of(services, "i0@client.test")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await services.act(lambda s: actions.snooze(s, u, tid, soon))
    inbox = services.db.run(lambda s: crm.inbox(s, me))
    assert "topic 0" not in {i.message.subject for i in inbox.items}
    await asyncio.sleep(1.1)
    inbox = services.db.run(lambda s: crm.inbox(s, me))
    assert "topic 0" in {i.message.subject for i in inbox.items}
    assert services.db.run(actions.wake_snoozed) == 1
    assert item_state(services, me, "i0@client.test")[0] == "open"


async def test_done_creates_the_archive_folder_when_the_server_has_none(
    services: Services, world: World, dovecot: Dovecot
) -> None:
    box = dovecot.add_user("noarchive@team.test", "pw-noarchive")
    me = world.user(box.email)
    world.contact("max@client.test")
    dovecot.deliver(
        box.email, message("max@client.test", box.email, "hi", msgid="<na1@client.test>")
    )
    dovecot.doveadm("mailbox", "delete", "-u", box.email, "Archive")
    account = world.connect(me, box)
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    await services.act(
        lambda s: actions.done(s, user(services, world, me), thread_of(services, "na1@client.test"))
    )
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    assert folders_on_server(dovecot, box.email, "<na1@client.test>") == ["Archive"]


async def test_inbound_attachment_over_the_limit_is_a_placeholder(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    from email.message import EmailMessage

    from crmail.storage.models import Attachment

    me = world.user(mailbox.email)
    world.contact("big@client.test")
    account = world.connect(me, mailbox, preset="outlook")  # 3 MB limit
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = (
        "big@client.test",
        mailbox.email,
        "the scan",
        "<big1@client.test>",
    )
    m.set_content("see attached")
    m.add_attachment(
        b"%PDF" + b"x" * (4 * 1024 * 1024),
        maintype="application",
        subtype="pdf",
        filename="scan.pdf",
    )
    m.add_attachment(b"small", maintype="text", subtype="plain", filename="note.txt")
    dovecot.deliver(mailbox.email, m.as_bytes())
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    rows = services.db.run(
        lambda s: {a.filename: a.placeholder_reason for a in s.scalars(select(Attachment))}
    )
    assert rows["note.txt"] is None
    assert rows["scan.pdf"] is not None and "3 MB" in rows["scan.pdf"]
    assert count(services, Message) == 1  # the message itself is kept, whole
