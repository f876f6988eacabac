"""One contract for every mail provider: a "mailbox driver" per provider gives the tests
the same hands on the server (deliver, archive or read in another client, look) and
the same CRM account, so each rule is proven against Dovecot (IMAP) and the fake Gmail
(the Gmail API) alike."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

import pytest
from sqlalchemy import func, select

from crmail.services import Services
from crmail.storage import crm
from crmail.storage.models import InboxItem, Message, TimelineEntry
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.worker import AccountWorker
from tests.factories import World, new_world
from tests.fakes.gmail import FakeGmail, Mailbox, StoredMessage
from tests.servers import Dovecot, MailboxAccount
from tests.sync.api_fixtures import connect_api_account
from tests.sync.gmail.conftest import gmail_fake, gmail_options
from tests.sync.test_inbound import FAST, server_flags

__all__ = ["gmail_fake"]  # the fake Gmail fixture, shared with tests/sync/gmail

_numbers = itertools.count(1)


class MailboxDriver(Protocol):
    """The server side of a test, whatever the provider."""

    address: str
    account_id: int

    def deliver(self, raw: bytes) -> None: ...
    def archive_elsewhere(self, msgid: str) -> None: ...
    def read_elsewhere(self, msgid: str) -> None: ...
    def in_inbox(self, msgid: str) -> bool: ...
    def is_read(self, msgid: str) -> bool: ...
    async def sync(self) -> None: ...


@dataclass
class DovecotDriver:
    services: Services
    dovecot: Dovecot
    box: MailboxAccount
    account_id: int

    @property
    def address(self) -> str:
        return self.box.email

    def deliver(self, raw: bytes) -> None:
        self.dovecot.deliver(self.box.email, raw)

    def archive_elsewhere(self, msgid: str) -> None:
        self.dovecot.doveadm(
            "move",
            "-u",
            self.box.email,
            "Archive",
            "mailbox",
            "INBOX",
            "header",
            "Message-ID",
            msgid,
        )

    def read_elsewhere(self, msgid: str) -> None:
        self.dovecot.doveadm(
            "flags",
            "add",
            "-u",
            self.box.email,
            "\\Seen",
            "mailbox",
            "*",
            "header",
            "Message-ID",
            msgid,
        )

    def _flags(self, msgid: str) -> str | None:
        for folder in ("INBOX", "Archive"):
            flags = server_flags(self.dovecot, self.box.email, folder).get(f"<{msgid}>")
            if flags is not None:
                return flags
        return None

    def in_inbox(self, msgid: str) -> bool:
        return f"<{msgid}>" in server_flags(self.dovecot, self.box.email, "INBOX")

    def is_read(self, msgid: str) -> bool:
        return "\\Seen" in (self._flags(msgid) or "")

    async def sync(self) -> None:
        await AccountWorker(self.services.db, self.services.box, self.account_id, FAST).run_once()


@dataclass
class GmailDriver:
    services: Services
    fake: FakeGmail
    url: str
    box: Mailbox
    account_id: int

    @property
    def address(self) -> str:
        return self.box.address

    def _message(self, msgid: str) -> StoredMessage:
        return next(
            m
            for m in self.box.messages.values()
            if str(m.parsed.get("Message-ID", "")).strip("<> ") == msgid
        )

    def deliver(self, raw: bytes) -> None:
        self.box.deliver(raw)

    def archive_elsewhere(self, msgid: str) -> None:
        self.box.modify(self._message(msgid).id, remove=("INBOX",))

    def read_elsewhere(self, msgid: str) -> None:
        self.box.modify(self._message(msgid).id, remove=("UNREAD",))

    def in_inbox(self, msgid: str) -> bool:
        return "INBOX" in self._message(msgid).labels

    def is_read(self, msgid: str) -> bool:
        return "UNREAD" not in self._message(msgid).labels

    async def sync(self) -> None:
        options = gmail_options(self.url)
        await GmailWorker(self.services.db, self.services.box, self.account_id, options).run_once()


@dataclass
class Crm:
    """The CRM side: one user with one connected mailbox."""

    services: Services
    world: World
    user_id: int

    def user(self) -> crm.UserInfo:
        return self.services.db.run(
            lambda s: crm.get_user(s, self.world.workspace_id, self.user_id)
        )

    def message(self, msgid: str) -> Message | None:
        return self.services.db.run(
            lambda s: s.scalar(
                select(Message).where(
                    Message.workspace_id == self.world.workspace_id, Message.message_id == msgid
                )
            )
        )

    def stored(self) -> int:
        return int(
            self.services.db.run(
                lambda s: s.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.workspace_id == self.world.workspace_id)
                )
            )
            or 0
        )

    def item(self, msgid: str) -> tuple[str, bool] | None:
        m = self.message(msgid)
        assert m is not None, f"{msgid} is not stored"
        row = self.services.db.run(
            lambda s: s.execute(
                select(InboxItem.state, InboxItem.is_read).where(
                    InboxItem.user_id == self.user_id, InboxItem.message_id == m.id
                )
            ).one_or_none()
        )
        return None if row is None else (row[0], row[1])

    def on_timeline(self, msgid: str, contact_id: int) -> bool:
        m = self.message(msgid)
        assert m is not None
        return bool(
            self.services.db.run(
                lambda s: s.scalar(
                    select(TimelineEntry.id).where(
                        TimelineEntry.message_id == m.id, TimelineEntry.subject_id == contact_id
                    )
                )
            )
        )


@pytest.fixture(params=["imap", "gmail"])
def provider(request: pytest.FixtureRequest, services: Services) -> tuple[MailboxDriver, Crm]:
    world = new_world(services)
    if request.param == "imap":
        dovecot: Dovecot = request.getfixturevalue("dovecot")
        box: MailboxAccount = request.getfixturevalue("mailbox")
        me = world.user(box.email)
        account_id = world.connect(me, box)
        imap = DovecotDriver(services, dovecot, box, account_id)
        return imap, Crm(services, world, me)
    fake, url = request.getfixturevalue("gmail_fake")
    fake.faults.clear()
    n = next(_numbers)
    address, token = f"kim{n}@gmail.test", f"contract-token-{n}"
    gbox = fake.add_mailbox(address, token=token)
    me = world.user(address)
    account_id = connect_api_account(services, world, me, address, token, "gmail")
    return GmailDriver(services, fake, url, gbox, account_id), Crm(services, world, me)
