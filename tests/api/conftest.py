"""API test fixtures: a real SQLite file, migrated, behind FastAPI's TestClient.

``world`` is two workspaces: A with an owner (member), a teammate (member) and an
admin, B with one user (``other``) who must never see anything of A.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.api import create_app
from crmail.config import Settings
from crmail.domain.folders import Role
from crmail.domain.scope import AddressBook, ContactRef, decide
from crmail.mime import parse_message
from crmail.services import Services
from crmail.storage import accounts, crm, item_sharing, mail
from crmail.storage.models import (
    Attachment,
    Contact,
    ContactEmail,
    Deal,
    DealContact,
    InboxItem,
    MailAccount,
    Message,
    MessageRaw,
    Participant,
    Placement,
    Thread,
    TimelineEntry,
    User,
)
from tests.db_fixtures import LOOPBACK


class FakeSync:
    def __init__(self) -> None:
        self.calls = 0
        self.woken: list[tuple[frozenset[int], bool]] = []

    def accounts_changed(self) -> None:
        self.calls += 1

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        self.woken.append((frozenset(account_ids), default_provider))


@dataclass(frozen=True)
class Actor:
    id: int
    email: str
    token: str
    workspace_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Mailbox:
    """An account stored directly (no IMAP), with its INBOX and Sent folders."""

    account_id: int
    inbox: int
    sent: int
    uids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**6)))


@dataclass
class World:
    services: Services
    client: TestClient
    sync: FakeSync
    owner: Actor
    teammate: Actor
    admin: Actor
    other: Actor

    def mailbox(self, actor: Actor, email: str | None = None) -> Mailbox:
        def make(s: Session) -> Mailbox:
            aid = accounts.create_account(
                s,
                workspace_id=actor.workspace_id,
                user_id=actor.id,
                email=email or actor.email,
                provider="imap",
                settings={"imap_host": "imap.invalid", "preset": "gmail"},
                secret=self.services.box.seal({"password": "not-a-real-one"}),
            )
            folders = mail.ensure_folders(s, aid, [("INBOX", Role.INBOX), ("Sent", Role.SENT)])
            by_name = {f.name: f.id for f in folders}
            return Mailbox(aid, by_name["INBOX"], by_name["Sent"])

        return self.services.db.run(make)

    def deliver(
        self, box: Mailbox, raw: bytes, *, folder: str = "inbox", flags: Iterable[str] = ()
    ) -> int:
        """Store ``raw`` as the sync engine does: parsed, linked by the scope rules, placed.

        Written with the ORM rather than ``storage.mail.apply_step`` so these API tests
        do not depend on the sync write path (tested on its own); the rows are the same.
        """
        parsed = parse_message(raw)
        env = parsed.envelope
        roles = {
            "from": {a.email for a in env.from_},
            "to": {a.email for a in env.to},
            "cc": {a.email for a in env.cc},
        }
        folder_id = box.inbox if folder == "inbox" else box.sent
        flag_list = sorted(flags)

        def store(s: Session) -> int:
            account = s.get_one(MailAccount, box.account_id)
            ws = account.workspace_id
            links = decide(roles, _address_book(s, ws)).links
            thread = Thread(workspace_id=ws, subject=env.subject, last_message_at=env.date)
            s.add(thread)
            s.flush()
            sender = env.from_[0] if env.from_ else None
            m = Message(
                workspace_id=ws,
                thread_id=thread.id,
                dedup_key=uuid.uuid4().hex,
                message_id=env.message_id,
                subject=env.subject,
                from_email=sender.email if sender else None,
                from_name=sender.name if sender else "",
                sent_at=env.date,
                snippet=parsed.snippet(),
                size=len(raw),
                parse_failed=parsed.parse_failed,
                defects=list(parsed.defects),
            )
            s.add(m)
            s.flush()
            s.add(MessageRaw(message_id=m.id, raw=raw))
            for role in ("from", "to", "cc"):
                for pos, a in enumerate(getattr(env, "from_" if role == "from" else role)):
                    s.add(
                        Participant(
                            message_id=m.id, role=role, position=pos, email=a.email, name=a.name
                        )
                    )
            for a in parsed.attachments:
                s.add(
                    Attachment(
                        message_id=m.id,
                        filename=a.filename,
                        content_type=a.content_type,
                        size=a.size,
                        content_id=a.content_id,
                        inline=a.inline,
                    )
                )
            for link in links:
                s.add(
                    TimelineEntry(
                        workspace_id=ws,
                        message_id=m.id,
                        subject_type=link.subject_type,
                        subject_id=link.subject_id,
                        reason=link.reason,
                    )
                )
            s.add(
                Placement(
                    message_id=m.id,
                    account_id=box.account_id,
                    folder_id=folder_id,
                    uid=next(box.uids),
                    flags=flag_list,
                )
            )
            if folder == "inbox":
                s.add(
                    InboxItem(
                        workspace_id=ws,
                        user_id=account.user_id,
                        message_id=m.id,
                        thread_id=thread.id,
                        is_read="\\Seen" in flag_list,
                        state="open",
                        received_at=env.date,
                    )
                )
            s.flush()
            item_sharing.refresh(s, [m.id])  # as the sync's apply_step does
            return m.id

        return self.services.db.run(store)


def _address_book(s: Session, ws: int) -> AddressBook:
    open_deals: dict[int, list[int]] = {}
    for cid, did in s.execute(
        select(DealContact.contact_id, Deal.id)
        .join(Deal, Deal.id == DealContact.deal_id)
        .where(Deal.workspace_id == ws, Deal.status == "open")
    ):
        open_deals.setdefault(cid, []).append(did)
    contacts = {
        email: ContactRef(cid, lead_id, tuple(open_deals.get(cid, ())))
        for email, cid, lead_id in s.execute(
            select(ContactEmail.email, Contact.id, Contact.lead_id)
            .join(Contact, Contact.id == ContactEmail.contact_id)
            .where(Contact.workspace_id == ws)
        )
    }
    own = {u for (u,) in s.execute(select(User.email).where(User.workspace_id == ws))}
    return AddressBook(contacts, frozenset(own))


def _actor(s: Session, ws: int, email: str, role: str) -> Actor:
    new = crm.create_user(s, ws, email, name=email.split("@")[0], role=role)
    return Actor(new.user.id, new.user.email, new.token, ws)


@pytest.fixture
def api_services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    # db_url: SQLite by default, PostgreSQL with CRMAIL_TEST_DB=postgres (marks the test "db")
    # The test mail servers (Dovecot) listen on loopback: allowed as a self-hosted
    # server's network would be in a deployment (CRMAIL_MAIL_ALLOWED_NETWORKS).
    settings = Settings(data_dir=tmp_path, database_url=db_url, mail_allowed_networks=LOOPBACK)
    services = Services.open(settings)
    services.sync = FakeSync()
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def world(api_services: Services) -> Iterator[World]:
    def make(s: Session) -> tuple[Actor, ...]:
        a = crm.create_workspace(s, "Acme").id
        b = crm.create_workspace(s, "Globex").id
        return (
            _actor(s, a, "owner@acme.test", "member"),
            _actor(s, a, "mate@acme.test", "member"),
            _actor(s, a, "boss@acme.test", "admin"),
            _actor(s, b, "someone@globex.test", "admin"),
        )

    owner, teammate, admin, other = api_services.db.run(make)
    sync = api_services.sync
    assert isinstance(sync, FakeSync)
    with TestClient(create_app(api_services)) as client:
        yield World(api_services, client, sync, owner, teammate, admin, other)
