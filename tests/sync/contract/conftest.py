"""One contract for every mail provider: a "mailbox driver" per provider gives the tests
the same hands on the server (deliver, archive or read in another client, look) and
the same CRM account, so each rule is proven against Dovecot (IMAP), the fake Gmail
(the Gmail API) and the fake Graph (Microsoft Graph) alike."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Protocol

import pytest
from sqlalchemy import func, select

from crmail.services import Services
from crmail.storage import crm
from crmail.storage.models import InboxItem, Message, TimelineEntry
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.worker import AccountWorker
from tests.factories import World, new_world
from tests.fakes import graph
from tests.fakes.gmail import FakeGmail, Mailbox, StoredMessage
from tests.servers import Dovecot, MailboxAccount
from tests.sync.api_fixtures import QUICK_RETRY, connect_api_account
from tests.sync.gmail.conftest import gmail_fake, gmail_options
from tests.sync.graph.conftest import graph_fake
from tests.sync.test_inbound import FAST, server_flags

# the fakes' session fixtures, shared with tests/sync/gmail and tests/sync/graph
__all__ = ["gmail_fake", "graph_fake"]

_numbers = itertools.count(1)


class MailboxDriver(Protocol):
    """The server side of a test, whatever the provider."""

    account_id: int

    @property
    def address(self) -> str: ...
    def deliver(self, raw: bytes) -> None: ...
    def archive_elsewhere(self, msgid: str) -> None: ...
    def read_elsewhere(self, msgid: str) -> None: ...
    def move_elsewhere(self, msgid: str, folder: str) -> None: ...
    def delete_elsewhere(self, msgid: str) -> None: ...
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

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        self.dovecot.doveadm("mailbox", "create", "-u", self.box.email, folder)
        self.dovecot.doveadm(
            "move", "-u", self.box.email, folder, "mailbox", "INBOX", "header", "Message-ID", msgid
        )

    def delete_elsewhere(self, msgid: str) -> None:
        self.dovecot.doveadm(
            "expunge", "-u", self.box.email, "mailbox", "*", "header", "Message-ID", msgid
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

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        label = self.box.create_label(folder)["id"]
        self.box.modify(self._message(msgid).id, add=(label,), remove=("INBOX",))

    def delete_elsewhere(self, msgid: str) -> None:
        self.box.delete(self._message(msgid).id)

    def in_inbox(self, msgid: str) -> bool:
        return "INBOX" in self._message(msgid).labels

    def is_read(self, msgid: str) -> bool:
        return "UNREAD" not in self._message(msgid).labels

    async def sync(self) -> None:
        options = gmail_options(self.url)
        await GmailWorker(self.services.db, self.services.box, self.account_id, options).run_once()


@dataclass
class GraphDriver:
    """Outlook has folders, not labels: archived is "moved to Archive", read is isRead."""

    services: Services
    fake: graph.FakeGraph
    url: str
    box: graph.Mailbox
    account_id: int

    @property
    def address(self) -> str:
        return self.box.address

    def _message(self, msgid: str) -> graph.StoredMessage:
        return next(
            m
            for m in self.box.messages.values()
            if str(m.parsed.get("Message-ID", "")).strip("<> ") == msgid
        )

    def deliver(self, raw: bytes) -> None:
        self.box.deliver(raw)

    def archive_elsewhere(self, msgid: str) -> None:
        self.box.move(self._message(msgid).id, "archive")

    def read_elsewhere(self, msgid: str) -> None:
        self.box.mark_read(self._message(msgid).id)

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        target = self.box.create_folder(folder)
        self.box.move(self._message(msgid).id, target.id)

    def delete_elsewhere(self, msgid: str) -> None:
        self.box.delete(self._message(msgid).id)

    def in_inbox(self, msgid: str) -> bool:
        return self._message(msgid).folder_id == self.box.folder("inbox").id

    def is_read(self, msgid: str) -> bool:
        return self._message(msgid).is_read

    async def sync(self) -> None:
        options = replace(FAST, graph=GraphOptions(base_url=self.url, retry=QUICK_RETRY))
        await GraphWorker(self.services.db, self.services.box, self.account_id, options).run_once()


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


@pytest.fixture(params=["imap", "gmail", "graph"])
def provider(request: pytest.FixtureRequest, services: Services) -> tuple[MailboxDriver, Crm]:
    world = new_world(services)
    if request.param == "imap":
        dovecot: Dovecot = request.getfixturevalue("dovecot")
        box: MailboxAccount = request.getfixturevalue("mailbox")
        me = world.user(box.email)
        account_id = world.connect(me, box)
        imap = DovecotDriver(services, dovecot, box, account_id)
        return imap, Crm(services, world, me)
    n = next(_numbers)
    if request.param == "graph":
        outlook, graph_url = request.getfixturevalue("graph_fake")
        outlook.faults.clear()
        outlook.pending.clear()
        address, token = f"sam{n}@contoso.test", f"contract-graph-token-{n}"
        obox = outlook.add_mailbox(address, token=token)
        me = world.user(address)
        account_id = connect_api_account(services, world, me, address, token, "graph")
        return GraphDriver(services, outlook, graph_url, obox, account_id), Crm(services, world, me)
    fake, url = request.getfixturevalue("gmail_fake")
    fake.faults.clear()
    address, token = f"kim{n}@gmail.test", f"contract-token-{n}"
    gbox = fake.add_mailbox(address, token=token)
    me = world.user(address)
    account_id = connect_api_account(services, world, me, address, token, "gmail")
    return GmailDriver(services, fake, url, gbox, account_id), Crm(services, world, me)
