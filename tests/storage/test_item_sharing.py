"""``inbox_items.shared`` follows every change that shows a message to another member.

A teammate's Inbox reads only the owner's shared items (see ``storage/item_sharing.py``),
so a flag left false would hide mail the teammate may read. Each path that can show a
message to someone besides its owner is driven here through the storage call the app
uses (a sync step, a link by hand), and the teammate's Inbox is read after it; the
migration's backfill is checked against the same cases.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crmail.domain.scope import Link
from crmail.mime import parse_message
from crmail.services import Services
from crmail.storage import crm, item_sharing, links, mail
from crmail.storage import web as web_store
from crmail.storage.models import (
    Contact,
    Folder,
    InboxItem,
    MailAccount,
    Message,
    Placement,
    Thread,
    TimelineEntry,
    User,
    Workspace,
)

pytestmark = pytest.mark.db

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIGRATION = (
    Path(__file__).parents[2] / "src/crmail/storage/migrations/versions/0014_inbox_items_shared.py"
)


@dataclass(frozen=True)
class Team:
    owner: int
    mate: int
    admin: int
    contact: int
    mate_inbox: int
    mate_account: int
    #: subject -> message id, all in the owner's Inbox
    msgs: dict[str, int]


def _account(s: Session, ws: int, user: int, email: str) -> tuple[int, int]:
    a = MailAccount(workspace_id=ws, user_id=user, email=email, secret=b"sealed")
    s.add(a)
    s.flush()
    f = Folder(account_id=a.id, name="INBOX", role="inbox")
    s.add(f)
    s.flush()
    return a.id, f.id


@pytest.fixture
def team(services: Services) -> Team:
    """The owner's Inbox: one message linked to a contact, the others private."""

    def make(s: Session) -> Team:
        ws = Workspace(name="Acme")
        s.add(ws)
        s.flush()
        owner, mate, admin = (
            User(workspace_id=ws.id, email=f"{n}@acme.test", name=n, role=r)
            for n, r in (("owner", "member"), ("mate", "member"), ("admin", "admin"))
        )
        s.add_all([owner, mate, admin])
        contact = Contact(workspace_id=ws.id, name="Ivy")
        s.add(contact)
        s.flush()
        owner_account, owner_inbox = _account(s, ws.id, owner.id, "owner@acme.test")
        mate_account, mate_inbox = _account(s, ws.id, mate.id, "mate@acme.test")
        msgs = {}
        for i, subject in enumerate(
            ("linked", "private", "later copy", "later link", "in two inboxes")
        ):
            thread = Thread(workspace_id=ws.id, subject=subject)
            s.add(thread)
            s.flush()
            m = Message(
                workspace_id=ws.id,
                thread_id=thread.id,
                dedup_key=subject,
                subject=subject,
                sent_at=T0 + timedelta(minutes=i),
            )
            s.add(m)
            s.flush()
            msgs[subject] = m.id
            s.add(
                Placement(message_id=m.id, account_id=owner_account, folder_id=owner_inbox, uid=i)
            )
            s.add(
                InboxItem(
                    workspace_id=ws.id,
                    user_id=owner.id,
                    message_id=m.id,
                    thread_id=thread.id,
                    received_at=m.sent_at,
                )
            )
        s.add(
            TimelineEntry(
                workspace_id=ws.id,
                message_id=msgs["linked"],
                subject_type="contact",
                subject_id=contact.id,
                reason="from Ivy",
            )
        )
        s.flush()
        # As the sync step that stored them would have left them.
        item_sharing.refresh(s, msgs.values())
        return Team(owner.id, mate.id, admin.id, contact.id, mate_inbox, mate_account, msgs)

    return services.db.run(make)


def _inbox_of_owner(services: Services, team: Team, viewer: int) -> list[str]:
    def read(s: Session) -> list[str]:
        me = web_store.user_by_id(s, viewer)
        return [e.message.subject for e in crm.inbox_for(s, me, team.owner).items]

    return services.db.run(read)


def test_a_teammate_sees_linked_mail_and_mail_that_reached_them_later(
    services: Services, team: Team
) -> None:
    assert _inbox_of_owner(services, team, team.mate) == ["linked"]

    # The same message arrives in the teammate's INBOX through a sync step.
    step = mail.FolderStep(
        folder_id=team.mate_inbox,
        copies=[mail.Copy(uid=7, flags=frozenset(), modseq=None, dedup_key="later copy")],
    )
    services.db.run(lambda s: mail.apply_step(s, team.mate_account, step))
    assert _inbox_of_owner(services, team, team.mate) == ["later copy", "linked"]
    # ... and only to them: for the admin it stays private.
    assert _inbox_of_owner(services, team, team.admin) == ["linked"]
    assert _inbox_of_owner(services, team, team.owner) == [
        "in two inboxes",
        "later link",
        "later copy",
        "private",
        "linked",
    ]


def _new_copy(uid: int, subject: str, links: tuple[Link, ...]) -> mail.Copy:
    raw = (
        f"From: ivy@client.test\r\nTo: owner@acme.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@client.test>\r\n"
        "Date: Thu, 01 Jan 2026 01:00:00 +0000\r\n\r\nHello\r\n"
    ).encode()
    new = mail.NewMessage(dedup_key=subject, parsed=parse_message(raw), raw=raw, links=links)
    return mail.Copy(uid=uid, flags=frozenset(), modseq=None, dedup_key=subject, new=new)


def test_new_mail_stored_by_a_sync_step_is_shared_only_if_linked(
    services: Services, team: Team
) -> None:
    def owner_inbox(s: Session) -> tuple[int, int]:
        account = s.scalars(select(MailAccount).where(MailAccount.user_id == team.owner)).one()
        folder = s.scalars(select(Folder.id).where(Folder.account_id == account.id)).one()
        return account.id, folder

    account, folder = services.db.run(owner_inbox)
    from_ivy = (Link("contact", team.contact, "from Ivy"),)
    step = mail.FolderStep(
        folder_id=folder,
        copies=[_new_copy(20, "new linked", from_ivy), _new_copy(21, "new private", ())],
    )
    services.db.run(lambda s: mail.apply_step(s, account, step))
    for viewer in (team.mate, team.admin):
        assert _inbox_of_owner(services, team, viewer) == ["new linked", "linked"]
    # ... and the private one stays out of the teammates' index range.
    shared = services.db.run(
        lambda s: dict(
            s.execute(
                select(Message.subject, InboxItem.shared)
                .join(Message, Message.id == InboxItem.message_id)
                .where(Message.subject.like("new %"))
            ).all()
        )
    )
    assert shared == {"new linked": True, "new private": False}


def test_a_link_by_hand_shows_the_item_and_unlinking_hides_it_again(
    services: Services, team: Team
) -> None:
    def by_owner(action):  # type: ignore[no-untyped-def]
        def run(s: Session) -> None:
            me = web_store.user_by_id(s, team.owner)
            action(s, me, team.msgs["later link"], "contact", team.contact)

        services.db.run(run)

    by_owner(links.link)
    for viewer in (team.mate, team.admin):
        assert _inbox_of_owner(services, team, viewer) == ["later link", "linked"]
    by_owner(links.unlink)
    for viewer in (team.mate, team.admin):
        assert _inbox_of_owner(services, team, viewer) == ["linked"]


def test_the_migrations_backfill_sets_the_flag_by_the_same_rule(
    services: Services, team: Team
) -> None:
    spec = importlib.util.spec_from_file_location("m0014", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    def run(s: Session) -> dict[tuple[int, str], bool]:
        # Every case of the rule: on a timeline, another member's copy, another member's
        # Inbox item, sent by another member; and private.
        s.add(
            Placement(
                message_id=team.msgs["later copy"],
                account_id=team.mate_account,
                folder_id=team.mate_inbox,
                uid=9,
            )
        )
        s.get_one(Message, team.msgs["later link"]).sent_by_user_id = team.mate
        both = s.get_one(Message, team.msgs["in two inboxes"])
        s.add(
            InboxItem(
                workspace_id=both.workspace_id,
                user_id=team.admin,
                message_id=both.id,
                thread_id=both.thread_id,
                received_at=T0,
            )
        )
        s.flush()
        s.execute(text("UPDATE inbox_items SET shared = :f"), {"f": False})
        s.execute(text(migration._BACKFILL))
        subject = {mid: name for name, mid in team.msgs.items()}
        return {
            (user, subject[mid]): shared
            for user, mid, shared in s.execute(
                select(InboxItem.user_id, InboxItem.message_id, InboxItem.shared)
            )
        }

    assert services.db.run(run) == {
        (team.owner, "linked"): True,
        (team.owner, "private"): False,
        (team.owner, "in two inboxes"): True,
        (team.admin, "in two inboxes"): True,
        (team.owner, "later copy"): True,
        (team.owner, "later link"): True,
    }
