"""The server's folders are the truth: synced folders renamed or deleted in another client
are followed or retired, and outbox actions find their message wherever it went."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crmail.api import create_app
from crmail.domain.folders import Role, may_be_renamed_to, new_home
from crmail.providers.imap import ImapClient
from crmail.services import Services
from crmail.storage import actions, mail, outbox, tokens
from crmail.storage.models import (
    Folder,
    MailAccount,
    Message,
    OutboxAction,
    Placement,
    TimelineEntry,
)
from crmail.sync.folders import message_id_search
from crmail.sync.syncback import SyncBack
from crmail.sync.worker import AccountWorker, imap_settings
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount
from tests.sync.test_inbound import FAST, count, server_flags, wait_for
from tests.sync.test_two_way import (
    Running,
    folders_on_server,
    item_state,
    thread_of,
    user,
)


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def placed_in(services: Services, msgid: str) -> list[tuple[int, str]]:
    """(folder id, folder name) of every placement of the message."""
    return sorted(
        (fid, name)
        for fid, name in services.db.run(
            lambda s: s.execute(
                select(Folder.id, Folder.name)
                .join(Placement, Placement.folder_id == Folder.id)
                .join(Message, Message.id == Placement.message_id)
                .where(Message.message_id == msgid)
            ).all()
        )
    )


def folder_names(services: Services, account: int) -> set[str]:
    return services.db.run(
        lambda s: set(s.scalars(select(Folder.name).where(Folder.account_id == account)))
    )


def message_ids(services: Services) -> dict[str, int]:
    return dict(services.db.run(lambda s: s.execute(select(Message.message_id, Message.id)).all()))


def chosen_folders(services: Services, account: int) -> object:
    return services.db.run(lambda s: s.get_one(MailAccount, account).settings.get("folders"))


def doveadm_move(dovecot: Dovecot, box: str, dest: str, src: str, msgid: str) -> None:
    dovecot.doveadm("move", "-u", box, dest, "mailbox", src, "header", "Message-ID", msgid)


async def sync_once(services: Services, account: int) -> None:
    await AccountWorker(services.db, services.box, account, FAST).run_once()


async def test_archive_renamed_is_followed_and_done_still_files(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("ann@client.test")
    account = world.connect(me, mailbox)
    for i in range(3):
        dovecot.deliver(
            mailbox.email,
            message("ann@client.test", mailbox.email, f"old {i}", msgid=f"<a{i}@client.test>"),
        )
        doveadm_move(dovecot, mailbox.email, "Archive", "INBOX", f"<a{i}@client.test>")
    dovecot.deliver(
        mailbox.email, message("ann@client.test", mailbox.email, "new", msgid="<n0@client.test>")
    )
    run = Running(services, account)
    try:
        await run.live()
        await wait_for(lambda: count(services, Placement) == 4)
        ids = message_ids(services)
        ((archive_id, _),) = placed_in(services, "a0@client.test")

        # Another client renames Archive; Dovecot then creates a new, empty \Archive.
        dovecot.doveadm("mailbox", "rename", "-u", mailbox.email, "Archive", "Done")
        await wait_for(lambda: placed_in(services, "a0@client.test") == [(archive_id, "Done")])
        for i in range(3):
            assert placed_in(services, f"a{i}@client.test") == [(archive_id, "Done")]
        assert message_ids(services) == ids  # same records, nothing stored twice
        assert chosen_folders(services, account) == ["Done"]  # it keeps syncing
        # the server's new Archive is synced too
        await wait_for(lambda: {"Archive", "Done"} <= folder_names(services, account))
        # Done marks read and files in the (new) Archive.
        await services.act(
            lambda s: actions.done(
                s, user(services, world, me), thread_of(services, "n0@client.test")
            )
        )
        await wait_for(
            lambda: folders_on_server(dovecot, mailbox.email, "<n0@client.test>") == ["Archive"]
        )
        assert "\\Seen" in server_flags(dovecot, mailbox.email, "Archive")["<n0@client.test>"]
        await wait_for(lambda: count(services, OutboxAction, OutboxAction.state == "done") == 1)
        assert item_state(services, me, "n0@client.test") == ("done", True)
        # Mail arriving in the renamed folder still syncs.
        dovecot.append(
            mailbox.email,
            "Done",
            message("ann@client.test", mailbox.email, "later", msgid="<a9@client.test>"),
        )
        await wait_for(lambda: placed_in(services, "a9@client.test") == [(archive_id, "Done")])
        assert count(services, TimelineEntry) == 5
    finally:
        await run.stop()


async def test_chosen_folder_renamed_keeps_its_messages_and_the_selection(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("bob@client.test")
    account = world.connect(me, mailbox, folders=["Clients"])
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Clients")
    for i in range(4):
        dovecot.append(
            mailbox.email,
            "Clients",
            message("bob@client.test", mailbox.email, f"c {i}", msgid=f"<c{i}@client.test>"),
        )
    await sync_once(services, account)
    ids = message_ids(services)
    ((clients_id, _),) = placed_in(services, "c0@client.test")

    dovecot.doveadm("mailbox", "rename", "-u", mailbox.email, "Clients", "Customers")
    await sync_once(services, account)
    for i in range(4):
        assert placed_in(services, f"c{i}@client.test") == [(clients_id, "Customers")]
    assert message_ids(services) == ids
    assert count(services, Placement) == 4
    assert chosen_folders(services, account) == ["Customers"]


async def test_deleted_folder_retires_its_placements_and_keeps_the_timeline(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("cat@client.test")
    account = world.connect(me, mailbox, folders=["Projects"])
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Projects")
    dovecot.append(
        mailbox.email,
        "Projects",
        message("cat@client.test", mailbox.email, "plan", msgid="<p0@client.test>"),
    )
    await sync_once(services, account)
    assert len(placed_in(services, "p0@client.test")) == 1

    dovecot.doveadm("mailbox", "delete", "-u", mailbox.email, "-s", "Projects")
    await sync_once(services, account)
    assert placed_in(services, "p0@client.test") == []
    assert count(services, Folder, Folder.name == "Projects") == 0
    assert count(services, Message) == 1
    assert count(services, TimelineEntry) == 1


def api_get(services: Services, user_id: int, path: str) -> Any:
    token = services.db.run(lambda s: tokens.issue(s, user_id, "test").secret)
    with TestClient(create_app(services)) as client:
        res = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200, res.text
    return res.json()


async def drain_without_discovery(services: Services, account: int) -> None:
    """Run the queued actions on a fresh connection, the folder list left as it was."""
    info = services.db.run(lambda s: mail.account_info(s, account))
    client = await ImapClient.connect(imap_settings(info, services.box))
    worker = AccountWorker(services.db, services.box, account, FAST)
    try:
        syncback = SyncBack(services.db, info, client)
        while (action := services.db.run(lambda s: outbox.claim_next(s, account))) is not None:
            await worker._run_action(syncback, action)
    finally:
        await client.logout()


async def test_action_finds_its_message_after_its_folder_was_deleted(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("dan@client.test")
    account = world.connect(me, mailbox, folders=["Projects"])
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Projects")
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Someday")
    dovecot.append(
        mailbox.email,
        "Projects",
        message("dan@client.test", mailbox.email, "p", msgid="<d0@client.test>"),
    )
    await sync_once(services, account)
    # Read in the CRM while another client moves the mail away and deletes its folder.
    await services.act(
        lambda s: actions.set_read(
            s, user(services, world, me), thread_of(services, "d0@client.test"), True
        )
    )
    doveadm_move(dovecot, mailbox.email, "Someday", "Projects", "<d0@client.test>")
    dovecot.doveadm("mailbox", "delete", "-u", mailbox.email, "Projects")
    await drain_without_discovery(services, account)
    assert count(services, OutboxAction, OutboxAction.state == "done") == 1
    assert "\\Seen" in server_flags(dovecot, mailbox.email, "Someday")["<d0@client.test>"]


async def test_action_on_mail_gone_from_the_mailbox_fails_precisely_and_the_item_follows_the_server(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("eve@client.test")
    account = world.connect(me, mailbox, folders=["Projects"])
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Projects")
    dovecot.deliver(
        mailbox.email, message("eve@client.test", mailbox.email, "q", msgid="<e0@client.test>")
    )
    await sync_once(services, account)
    tid = thread_of(services, "e0@client.test")
    await services.act(lambda s: actions.done(s, user(services, world, me), tid))
    assert item_state(services, me, "e0@client.test") == ("done", True)
    # Another client moves it to a folder, deletes that folder: it is in no folder now.
    doveadm_move(dovecot, mailbox.email, "Projects", "INBOX", "<e0@client.test>")
    dovecot.doveadm("mailbox", "delete", "-u", mailbox.email, "Projects")
    await drain_without_discovery(services, account)

    (error,) = services.db.run(
        lambda s: s.scalars(
            select(OutboxAction.last_error).where(OutboxAction.state == "failed")
        ).all()
    )
    assert "the message is no longer in the mailbox" in error
    # Not shown as done: the item is what the CRM last knew of the server (in INBOX,
    # unread), then what the next sync finds (gone from INBOX).
    assert item_state(services, me, "e0@client.test") == ("open", False)
    mid = message_ids(services)["e0@client.test"]
    assert "no longer in the mailbox" in api_get(services, me, f"/api/messages/{mid}")["sync_error"]
    (entry,) = api_get(services, me, "/api/inbox")["items"]
    assert "no longer in the mailbox" in entry["sync_error"]
    await sync_once(services, account)
    assert item_state(services, me, "e0@client.test") == ("archived", False)
    assert count(services, TimelineEntry) == 1


async def test_done_that_fails_for_good_is_not_shown_as_done(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("fay@client.test")
    account = world.connect(me, mailbox)
    dovecot.deliver(
        mailbox.email, message("fay@client.test", mailbox.email, "r", msgid="<f0@client.test>")
    )
    await sync_once(services, account)
    tid = thread_of(services, "f0@client.test")
    await services.act(lambda s: actions.done(s, user(services, world, me), tid))
    assert item_state(services, me, "f0@client.test") == ("done", True)
    action = services.db.run(lambda s: outbox.claim_next(s, account))
    assert action is not None
    # The server refuses for good (here: as after the last of the retries).
    services.db.run(
        lambda s: actions.sync_failed(s, action.id, "MOVE to Archive failed (NO)", retryable=False)
    )
    assert item_state(services, me, "f0@client.test") == ("open", False)
    assert "\\Seen" not in server_flags(dovecot, mailbox.email)["<f0@client.test>"]
    (entry,) = api_get(services, me, "/api/inbox")["items"]
    assert entry["state"] == "open" and entry["is_read"] is False
    assert entry["sync_error"] == "MOVE to Archive failed (NO)"
    # Acting again clears the error.
    await services.act(lambda s: actions.done(s, user(services, world, me), tid))
    await sync_once(services, account)
    mid = message_ids(services)["f0@client.test"]
    assert services.db.run(lambda s: outbox.sync_errors(s, me, [mid])) == {}
    assert folders_on_server(dovecot, mailbox.email, "<f0@client.test>") == ["Archive"]


def test_where_a_vanished_folder_went() -> None:
    # the folder holding at least half of its mail is the folder renamed
    assert new_home(Role.CUSTOM, 4, {"Customers": 4, "Misc": 1}, []) == "Customers"
    assert new_home(Role.CUSTOM, 4, {"Misc": 1}, []) is None
    # a tie goes to the folder announcing the same special use
    assert new_home(Role.ARCHIVE, 2, {"B": 1, "Old": 1}, ["Old"]) == "Old"
    # an empty folder can only be recognised by its special use, and only if unambiguous
    assert new_home(Role.ARCHIVE, 0, {}, ["Done"]) == "Done"
    assert new_home(Role.ARCHIVE, 0, {}, ["A", "B"]) is None
    assert new_home(Role.CUSTOM, 0, {}, []) is None
    # mail thrown away is not a rename
    assert not may_be_renamed_to(Role.ARCHIVE, Role.TRASH)
    assert not may_be_renamed_to(Role.CUSTOM, Role.INBOX)
    assert may_be_renamed_to(Role.SENT, Role.SENT) and not may_be_renamed_to(
        Role.SENT, Role.ARCHIVE
    )


def test_message_id_search_is_quoted_and_skips_what_cannot_be_searched() -> None:
    assert message_id_search([]) is None
    assert message_id_search(["a@x"]) == 'HEADER Message-ID "<a@x>"'
    assert message_id_search(["a@x", 'b"\\@x', "é@x", "c@x"]) == (
        'OR HEADER Message-ID "<a@x>" OR HEADER Message-ID "<b\\"\\\\@x>" HEADER Message-ID "<c@x>"'
    )
