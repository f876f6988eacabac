"""One contract for every mail provider: a mailbox driver per provider
(:mod:`tests.sync.contract.drivers`) gives the tests the same hands on the server and the
same CRM account, so each rule is proven against Dovecot (IMAP), the fake Gmail (the
Gmail API) and the fake Graph (Microsoft Graph) alike."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import (
    ContactEmail,
    Folder,
    InboxItem,
    Message,
    Placement,
    TimelineEntry,
)
from tests.factories import World, new_world
from tests.servers import Dovecot, SmtpRelay
from tests.sync.contract.drivers import (
    Copy,
    DovecotDriver,
    GmailDriver,
    GraphDriver,
    MailboxDriver,
)
from tests.sync.gmail.conftest import gmail_fake
from tests.sync.graph.conftest import graph_fake
from tests.sync.test_sending import smtp_settings

# the fakes' session fixtures, shared with tests/sync/gmail and tests/sync/graph
__all__ = ["gmail_fake", "graph_fake"]

PROVIDERS = ["imap", "gmail", "graph"]
_numbers = itertools.count(1)


@dataclass
class Crm:
    """The CRM side: one user with one connected mailbox."""

    services: Services
    world: World
    user_id: int
    account_id: int

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

    def stored_ids(self) -> list[str]:
        return self.services.db.run(
            lambda s: sorted(
                s.scalars(
                    select(Message.message_id).where(
                        Message.workspace_id == self.world.workspace_id
                    )
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

    def links(self, msgid: str) -> set[tuple[str, int]]:
        m = self.message(msgid)
        assert m is not None, f"{msgid} is not stored"
        return self.services.db.run(
            lambda s: {
                (kind, subject)
                for kind, subject in s.execute(
                    select(TimelineEntry.subject_type, TimelineEntry.subject_id).where(
                        TimelineEntry.message_id == m.id
                    )
                ).all()
            }
        )

    def on_timeline(self, msgid: str, contact_id: int) -> bool:
        return ("contact", contact_id) in self.links(msgid)

    def placements(self, msgid: str) -> list[Copy]:
        """Where crmail knows the message is in this user's mailbox, and read or not."""
        return self.services.db.run(
            lambda s: sorted(
                (name, "\\Seen" in flags)
                for name, flags in s.execute(
                    select(Folder.name, Placement.flags)
                    .join(Placement, Placement.folder_id == Folder.id)
                    .join(Message, Message.id == Placement.message_id)
                    .where(Folder.account_id == self.account_id, Message.message_id == msgid)
                ).all()
            )
        )

    def skipped(self) -> Counter[str]:
        """Mail judged and left out, counted by reason over the account's folders."""
        rows = self.services.db.run(
            lambda s: list(
                s.scalars(select(Folder.skipped).where(Folder.account_id == self.account_id))
            )
        )
        total: Counter[str] = Counter()
        for row in rows:
            total.update(row or {})
        return total

    def folders(self) -> int:
        return int(
            self.services.db.run(
                lambda s: s.scalar(
                    select(func.count())
                    .select_from(Folder)
                    .where(Folder.account_id == self.account_id)
                )
            )
            or 0
        )

    def contacts(self) -> set[str]:
        return self.services.db.run(
            lambda s: set(
                s.scalars(
                    select(ContactEmail.email).where(
                        ContactEmail.workspace_id == self.world.workspace_id
                    )
                )
            )
        )


@dataclass
class Mailboxes:
    """Connects CRM users of a world to fresh mailboxes on one provider."""

    kind: str
    services: Services
    request: pytest.FixtureRequest

    def new_world(self) -> World:
        return new_world(self.services)

    def recipient(self, name: str) -> str:
        """An outside address mail can be sent to (IMAP's relay delivers into Dovecot)."""
        n = next(_numbers)
        if self.kind != "imap":
            return f"{name}{n}@client.test"
        dovecot: Dovecot = self.request.getfixturevalue("dovecot")
        return dovecot.add_user(f"{name}{n}@client.test", f"pw-outside-{n}").email

    def connect(
        self,
        world: World,
        name: str = "sam",
        *,
        sending: bool = False,
        **settings: object,
    ) -> tuple[MailboxDriver, Crm]:
        """A new mailbox ``name<N>@…`` for a new user of ``world``, with account settings
        (scope, folders, mode, auto_create_contacts…). ``sending``: IMAP needs an SMTP
        relay to send (the API providers send through their API)."""
        n = next(_numbers)
        chosen = tuple(str(f) for f in settings.get("folders", ()))  # type: ignore[attr-defined]
        driver: MailboxDriver
        if self.kind == "imap":
            dovecot: Dovecot = self.request.getfixturevalue("dovecot")
            box = dovecot.add_user(f"{name}{n}@example.test", f"pw-contract-{n}")
            if sending:
                relay: SmtpRelay = self.request.getfixturevalue("smtp_relay")
                settings = {**smtp_settings(relay), **settings}
            me = world.user(box.email)
            account = world.connect(me, box, **settings)
            driver = DovecotDriver(self.services, dovecot, box, account, chosen)
            return driver, Crm(self.services, world, me, account)
        token = f"contract-{self.kind}-token-{n}"
        if self.kind == "graph":
            outlook, graph_url = self.request.getfixturevalue("graph_fake")
            outlook.faults.clear()
            outlook.pending.clear()
            address = f"{name}{n}@contoso.test"
            obox = outlook.add_mailbox(address, token=token)
            me = world.user(address)
            account = self._api_account(world, me, address, token, settings)
            driver = GraphDriver(self.services, outlook, graph_url, obox, account, chosen)
            return driver, Crm(self.services, world, me, account)
        fake, url = self.request.getfixturevalue("gmail_fake")
        fake.faults.clear()
        address = f"{name}{n}@gmail.test"
        gbox = fake.add_mailbox(address, token=token)
        me = world.user(address)
        account = self._api_account(world, me, address, token, settings)
        return GmailDriver(self.services, fake, url, gbox, account, chosen), Crm(
            self.services, world, me, account
        )

    def _api_account(
        self, world: World, user_id: int, address: str, token: str, settings: dict[str, object]
    ) -> int:
        secret = self.services.box.seal({"oauth2_token": token})
        return self.services.db.run(
            lambda s: accounts.create_account(
                s,
                workspace_id=world.workspace_id,
                user_id=user_id,
                email=address,
                provider=self.kind,
                settings={"history_days": 30, **settings},
                secret=secret,
            )
        )


@pytest.fixture(params=PROVIDERS)
def mailboxes(request: pytest.FixtureRequest, services: Services) -> Mailboxes:
    return Mailboxes(request.param, services, request)


@pytest.fixture
def provider(mailboxes: Mailboxes) -> tuple[MailboxDriver, Crm]:
    """One user of a new workspace with a fresh mailbox, default settings."""
    return mailboxes.connect(mailboxes.new_world())
