"""Inbound sync against a real Dovecot: import, push, changes by other clients, resets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crmail.services import Services
from crmail.storage.models import (
    Folder,
    InboxItem,
    MailAccount,
    Message,
    Placement,
    TimelineEntry,
)
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import AccountWorker, WorkerOptions
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount

FAST = WorkerOptions(sync=SyncOptions(batch_size=50), poll_interval=0.2, idle_timeout=5)


def q(services: Services, stmt):  # type: ignore[no-untyped-def]
    return services.db.run(lambda s: s.execute(stmt).all())


def count(services: Services, model: type, *where) -> int:  # type: ignore[no-untyped-def]
    return services.db.run(
        lambda s: s.scalar(select(func.count()).select_from(model).where(*where))
    )


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def server_flags(dovecot: Dovecot, user: str, folder: str = "INBOX") -> dict[str, str]:
    out = dovecot.doveadm("fetch", "-u", user, "hdr.message-id flags", "mailbox", folder)
    flags: dict[str, str] = {}
    msgid = None
    for line in out.splitlines():
        if line.lower().startswith("hdr.message-id:"):
            msgid = line.split(":", 1)[1].strip()
        elif line.startswith("flags:") and msgid is not None:
            flags[msgid] = line.split(":", 1)[1].strip()
    return flags


async def test_initial_import_stores_contact_mail_only(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    acme = world.lead("ACME Corp")
    alice = world.contact("alice@acme.test", name="Alice", lead_id=acme)
    open_deal = world.deal("Big deal", alice)
    world.deal("Old deal", alice, status="lost")
    account = world.connect(me, mailbox)

    dovecot.deliver(
        mailbox.email,
        message("Alice <alice@acme.test>", mailbox.email, "Quote", msgid="<q1@acme.test>"),
    )
    dovecot.deliver(
        mailbox.email,
        message("Bob <bob@private.test>", mailbox.email, "Dinner?", msgid="<p1@private.test>"),
    )
    dovecot.deliver(
        mailbox.email,
        message("news@list.test", mailbox.email, "Newsletter", msgid="<n1@list.test>"),
    )
    dovecot.append(
        mailbox.email,
        "Sent",
        message(
            mailbox.email,
            "alice@acme.test",
            "Re: Quote",
            msgid="<r1@me.test>",
            in_reply_to="<q1@acme.test>",
        ),
        flags=["\\Seen"],
    )

    await AccountWorker(services.db, services.box, account, FAST).run_once()

    stored = {r[0] for r in q(services, select(Message.message_id))}
    assert stored == {"q1@acme.test", "r1@me.test"}
    # the reply and the original are one thread
    threads = {r[0] for r in q(services, select(Message.thread_id))}
    assert len(threads) == 1
    links = set(q(services, select(TimelineEntry.subject_type, TimelineEntry.subject_id)))
    assert links == {("contact", alice), ("lead", acme), ("deal", open_deal)}
    inbox = q(services, select(InboxItem.user_id, InboxItem.state, InboxItem.is_read))
    assert inbox == [(me, "open", False)]
    skipped = services.db.run(
        lambda s: {
            f.name: f.skipped for f in s.scalars(select(Folder).where(Folder.account_id == account))
        }
    )
    assert skipped["INBOX"] == {"no_known_contact": 2}
    state = services.db.run(lambda s: s.get_one(MailAccount, account).state)
    assert state == "live"
    # reading never marks anything read on the server
    assert "\\Seen" not in server_flags(dovecot, mailbox.email)["<q1@acme.test>"]


async def test_push_and_changes_from_another_client(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("carol@client.test")
    account = world.connect(me, mailbox)
    worker = asyncio.create_task(AccountWorker(services.db, services.box, account, FAST).run())
    try:
        await wait_for(
            lambda: services.db.run(lambda s: s.get_one(MailAccount, account).state) == "live"
        )
        dovecot.deliver(
            mailbox.email,
            message("carol@client.test", mailbox.email, "New lead", msgid="<c1@client.test>"),
        )
        await wait_for(lambda: count(services, InboxItem, InboxItem.state == "open") == 1)

        dovecot.doveadm("flags", "add", "-u", mailbox.email, "\\Seen", "mailbox", "INBOX", "all")
        await wait_for(lambda: count(services, InboxItem, InboxItem.is_read.is_(True)) == 1)

        dovecot.doveadm("move", "-u", mailbox.email, "Archive", "mailbox", "INBOX", "all")
        await wait_for(lambda: count(services, InboxItem, InboxItem.state == "archived") == 1)
        await wait_for(lambda: count(services, Placement) == 1)
        folder = q(services, select(Folder.name).join(Placement, Placement.folder_id == Folder.id))
        assert folder == [("Archive",)]
        assert count(services, TimelineEntry) == 1

        # deleted in another client: the CRM keeps the message on the timeline
        dovecot.doveadm("expunge", "-u", mailbox.email, "mailbox", "Archive", "all")
        await wait_for(lambda: count(services, Placement) == 0)
        assert count(services, Message) == 1
        assert count(services, TimelineEntry) == 1
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_uidvalidity_change_remaps_without_duplicates(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("dan@client.test")
    account = world.connect(me, mailbox)
    for i in range(5):
        dovecot.deliver(
            mailbox.email,
            message("dan@client.test", mailbox.email, f"m{i}", msgid=f"<d{i}@client.test>"),
        )
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    before_uv = q(services, select(Folder.uidvalidity).where(Folder.name == "INBOX"))[0][0]
    assert count(services, Message) == 5

    dovecot.doveadm(
        "mailbox", "update", "-u", mailbox.email, "--uid-validity", str(before_uv + 1000), "INBOX"
    )
    await AccountWorker(services.db, services.box, account, FAST).run_once()

    assert (
        q(services, select(Folder.uidvalidity).where(Folder.name == "INBOX"))[0][0]
        == before_uv + 1000
    )
    assert count(services, Message) == 5
    assert count(services, TimelineEntry) == 5
    assert count(services, Placement) == 5
    assert count(services, InboxItem, InboxItem.state == "open") == 5


async def test_teammates_share_one_message(
    services: Services, world: World, dovecot: Dovecot
) -> None:
    a = dovecot.add_user("ann@team.test", "pw-ann-1")
    b = dovecot.add_user("ben@team.test", "pw-ben-1")
    ua, ub = world.user(a.email), world.user(b.email)
    world.contact("erin@client.test")
    raw = message(
        "erin@client.test", [a.email, b.email], "For you both", msgid="<both@client.test>"
    )
    dovecot.deliver(a.email, raw)
    dovecot.deliver(b.email, raw)
    for uid, box in ((ua, a), (ub, b)):
        acc = world.connect(uid, box)
        await AccountWorker(services.db, services.box, acc, FAST).run_once()
    assert count(services, Message) == 1
    assert count(services, Placement) == 2
    assert sorted(r[0] for r in q(services, select(InboxItem.user_id))) == sorted([ua, ub])
    # mail between teammates only is not CRM mail
    dovecot.deliver(b.email, message(a.email, b.email, "lunch", msgid="<lunch@team.test>"))
    acc_b = services.db.run(
        lambda s: s.scalar(select(MailAccount.id).where(MailAccount.user_id == ub))
    )
    await AccountWorker(services.db, services.box, acc_b, FAST).run_once()
    assert count(services, Message) == 1


async def test_history_window_and_newest_first(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("fay@client.test")
    account = world.connect(me, mailbox)
    old = (datetime.now(UTC) - timedelta(days=400)).timestamp()
    dovecot.seed_maildir(
        mailbox.email,
        "INBOX",
        [message("fay@client.test", mailbox.email, "ancient", msgid="<old@c.test>")],
        mtime=old,
    )
    dovecot.seed_maildir(
        mailbox.email,
        "INBOX",
        [
            message("fay@client.test", mailbox.email, f"recent {i}", msgid=f"<new{i}@c.test>")
            for i in range(120)
        ],
    )
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    ids = {r[0] for r in q(services, select(Message.message_id))}
    assert "old@c.test" not in ids
    assert len(ids) == 120


@pytest.mark.parametrize(
    "disabled",
    [
        ["QRESYNC"],
        ["QRESYNC", "CONDSTORE"],
        ["QRESYNC", "CONDSTORE", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "ESEARCH", "LITERAL+"],
    ],
    ids=["condstore-only", "no-modseq", "bare-imap4rev1"],
)
async def test_fallbacks_without_extensions(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount, disabled: list[str]
) -> None:
    me = world.user(mailbox.email)
    world.contact("gus@client.test")
    account = world.connect(me, mailbox, imap_disabled_caps=disabled)
    for i in range(3):
        dovecot.deliver(
            mailbox.email,
            message("gus@client.test", mailbox.email, f"g{i}", msgid=f"<g{i}@c.test>"),
        )
    worker = asyncio.create_task(AccountWorker(services.db, services.box, account, FAST).run())
    try:
        await wait_for(lambda: count(services, InboxItem, InboxItem.state == "open") == 3)
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
            "<g0@c.test>",
        )
        await wait_for(lambda: count(services, InboxItem, InboxItem.is_read.is_(True)) == 1)
        dovecot.doveadm(
            "expunge",
            "-u",
            mailbox.email,
            "mailbox",
            "INBOX",
            "header",
            "Message-ID",
            "<g1@c.test>",
        )
        await wait_for(lambda: count(services, InboxItem, InboxItem.state == "archived") == 1)
        dovecot.deliver(
            mailbox.email, message("gus@client.test", mailbox.email, "g3", msgid="<g3@c.test>")
        )
        await wait_for(lambda: count(services, Message) == 4)
        assert count(services, InboxItem, InboxItem.state == "open") == 3
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_overlong_header_values_are_cut_not_fatal(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    """Names, file names and subjects far beyond any column size (PostgreSQL enforces
    them) are stored cut; the message is not lost and the sync goes on."""
    from email.message import EmailMessage

    me = world.user(mailbox.email)
    world.contact("long@client.test")
    account = world.connect(me, mailbox)
    m = EmailMessage()
    m["From"] = f'"{"N" * 1500}" <long@client.test>'
    m["To"] = f'"{"T" * 900}" <{mailbox.email}>, {"x" * 300}@toolong.test'
    m["Subject"] = "S" * 5000
    m["Message-ID"] = "<long1@client.test>"
    m.set_content("body")
    m.add_attachment(
        b"data", maintype="application", subtype="octet-stream", filename="f" * 900 + ".bin"
    )
    dovecot.deliver(mailbox.email, m.as_bytes())
    dovecot.deliver(
        mailbox.email,
        message("long@client.test", mailbox.email, "after", msgid="<long2@client.test>"),
    )
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    assert {r[0] for r in q(services, select(Message.message_id))} == {
        "long1@client.test",
        "long2@client.test",
    }


async def test_import_slices_are_bounded_in_bytes_and_overlap_without_loss(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slice is held in memory until written: big messages make smaller slices. Slices
    are fetched while earlier ones are written, and every message lands exactly once."""
    from crmail.sync import inbound

    me = world.user(mailbox.email)
    world.contact("alice@acme.test", name="Alice")
    account = world.connect(me, mailbox)
    big = "x" * 30_000
    raws = [
        message("alice@acme.test", mailbox.email, f"Report {i}", big, msgid=f"<big{i}@acme.test>")
        for i in range(9)
    ] + [
        message("alice@acme.test", mailbox.email, f"Note {i}", msgid=f"<small{i}@acme.test>")
        for i in range(20)
    ]
    dovecot.seed_maildir(mailbox.email, "INBOX", raws)
    written: list[int] = []
    apply = inbound.FolderSync._apply

    async def spy(self, step):  # type: ignore[no-untyped-def]
        if step.copies:
            written.append(sum(c.new.parsed.size for c in step.copies if c.new))
        return await apply(self, step)

    monkeypatch.setattr(inbound.FolderSync, "_apply", spy)
    budget = 70_000
    options = WorkerOptions(sync=SyncOptions(batch_size=10, slice_bytes=budget))
    await AccountWorker(services.db, services.box, account, options).run_once()

    assert count(services, Message) == 29
    assert count(services, Placement) == 29
    assert count(services, InboxItem) == 29
    # big messages came two to a slice, small ones ten to a slice
    assert all(size <= budget for size in written), written
    assert len(written) == 5 + 2, written
    folder = services.db.run(
        lambda s: s.scalars(
            select(Folder).where(Folder.account_id == account, Folder.name == "INBOX")
        ).one()
    )
    assert folder.import_complete and folder.import_done == 29


def test_a_slice_takes_at_least_one_message_and_stops_at_the_budget() -> None:
    from crmail.sync.inbound import _within

    sizes = {5: 40, 4: 40, 3: 10, 2: 500}
    assert _within([5, 4, 3, 2], sizes, 100) == [5, 4, 3]
    assert _within([2, 1], sizes, 100) == [2]  # one too big message still goes alone
    assert _within([9, 8], {}, 1) == [9, 8]  # expunged meanwhile: no size, no cost
