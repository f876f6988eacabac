"""Mail without a Message-ID against a real Dovecot: told apart by its body, while the
copies of one message (folders, teammates, a re-import) are still stored once."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmail.services import Services
from crmail.storage.models import Folder, Message, Placement
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import AccountWorker, WorkerOptions
from tests.factories import World, new_world
from tests.servers import Dovecot, MailboxAccount

FAST = WorkerOptions(sync=SyncOptions(batch_size=50), poll_interval=0.2, idle_timeout=5)

pytestmark = pytest.mark.db


def cron_mail(to: str, body: str) -> bytes:
    # What cron sends through a bare sendmail: no Message-ID, and the same headers on
    # every run that falls in the same second.
    return (
        f"From: Cron Daemon <cron@host.test>\r\nTo: {to}\r\n"
        "Subject: Cron <root@host> /usr/local/bin/backup\r\n"
        "Date: Tue, 01 Dec 2026 03:00:00 +0000\r\n"
        f"Content-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
    ).encode()


def count(services: Services, model: type) -> int:
    return services.db.run(lambda s: s.scalar(select(func.count()).select_from(model)))


async def sync_once(services: Services, account: int) -> None:
    await AccountWorker(services.db, services.box, account, FAST).run_once()


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


async def test_same_headers_different_bodies_are_two_messages_and_copies_are_one(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    world.contact("cron@host.test")
    account = world.connect(me, mailbox)
    ok = cron_mail(mailbox.email, "backup done: 12 GB")
    failed = cron_mail(mailbox.email, "backup FAILED: disk full")
    # LMTP adds Return-Path, Delivered-To and Received to each delivered copy.
    dovecot.deliver(mailbox.email, ok)
    dovecot.deliver(mailbox.email, failed)
    # Private mail without Message-ID: judged on its header like any other, not stored.
    dovecot.deliver(
        mailbox.email, cron_mail(mailbox.email, "private").replace(b"cron@host", b"me@home")
    )
    # The same message filed in Archive by another client, with its own server headers.
    dovecot.append(
        mailbox.email,
        "Archive",
        b"Return-Path: <root@host.test>\r\nX-Delivered-To: archive@example.test\r\n"
        b"Received: from relay.example.test by mx.example.test; Tue, 1 Dec 2026 03:00:09\r\n"
        b"Status: RO\r\nX-Keywords: $Label1\r\n" + ok.replace(b"\r\n", b"\n"),
    )
    await sync_once(services, account)

    bodies = services.db.run(
        lambda s: sorted(s.scalars(select(Message.snippet).where(Message.message_id.is_(None))))
    )
    assert bodies == ["backup FAILED: disk full", "backup done: 12 GB"]
    assert count(services, Placement) == 3

    # A re-import (new UIDVALIDITY) finds both again instead of storing them twice.
    uv = services.db.run(
        lambda s: s.scalar(select(Folder.uidvalidity).where(Folder.name == "INBOX"))
    )
    dovecot.doveadm(
        "mailbox", "update", "-u", mailbox.email, "--uid-validity", str(uv + 1000), "INBOX"
    )
    await sync_once(services, account)
    assert count(services, Message) == 2
    assert count(services, Placement) == 3


async def test_teammates_share_one_message_without_message_id(
    services: Services, world: World, dovecot: Dovecot
) -> None:
    a = dovecot.add_user("ann@team.test", "pw-ann-1")
    b = dovecot.add_user("ben@team.test", "pw-ben-1")
    world.contact("cron@host.test")
    raw = cron_mail(f"{a.email}, {b.email}", "disk 91% full")
    dovecot.deliver(a.email, raw)
    dovecot.deliver(b.email, raw)
    for box in (a, b):
        await sync_once(services, world.connect(world.user(box.email), box))
    assert count(services, Message) == 1
    assert count(services, Placement) == 2
