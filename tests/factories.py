"""Small builders for test data: a workspace with a user, contacts and a connected mailbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy.orm import Session

from crmail.services import Services
from crmail.storage import accounts
from crmail.storage.calendar_models import CalendarEvent, EventLink
from crmail.storage.models import Contact, ContactEmail, Deal, DealContact, Lead, User, Workspace
from tests.servers import MailboxAccount


@dataclass
class World:
    services: Services
    workspace_id: int

    def user(self, email: str, name: str = "") -> int:
        def make(s):  # type: ignore[no-untyped-def]
            u = User(workspace_id=self.workspace_id, email=email.lower(), name=name or email)
            s.add(u)
            s.flush()
            return u.id

        return self.services.db.run(make)

    def lead(self, name: str) -> int:
        def make(s):  # type: ignore[no-untyped-def]
            lead = Lead(workspace_id=self.workspace_id, name=name)
            s.add(lead)
            s.flush()
            return lead.id

        return self.services.db.run(make)

    def contact(self, *emails: str, name: str = "", lead_id: int | None = None) -> int:
        def make(s):  # type: ignore[no-untyped-def]
            c = Contact(workspace_id=self.workspace_id, name=name or emails[0], lead_id=lead_id)
            s.add(c)
            s.flush()
            for e in emails:
                s.add(
                    ContactEmail(workspace_id=self.workspace_id, contact_id=c.id, email=e.lower())
                )
            return c.id

        return self.services.db.run(make)

    def deal(
        self, title: str, *contact_ids: int, status: str = "open", lead_id: int | None = None
    ) -> int:
        def make(s):  # type: ignore[no-untyped-def]
            d = Deal(workspace_id=self.workspace_id, title=title, status=status, lead_id=lead_id)
            s.add(d)
            s.flush()
            for cid in contact_ids:
                s.add(DealContact(deal_id=d.id, contact_id=cid))
            return d.id

        return self.services.db.run(make)

    def connect(self, user_id: int, box: MailboxAccount, **settings: object) -> int:
        cfg: dict[str, object] = {
            "imap_host": box.host,
            "imap_port": box.tls_port,
            "imap_security": "tls",
            "ca_file": box.ca_file,
            "username": box.email,
        }
        cfg.update(settings)
        secret = self.services.box.seal({"password": box.password})
        return self.services.db.run(
            lambda s: accounts.create_account(
                s,
                workspace_id=self.workspace_id,
                user_id=user_id,
                email=box.email,
                provider="imap",
                settings=cfg,
                secret=secret,
            )
        )


def new_world(services: Services) -> World:
    def make(s):  # type: ignore[no-untyped-def]
        w = Workspace(name="Acme " + uuid.uuid4().hex[:6])
        s.add(w)
        s.flush()
        return w.id

    return World(services, services.db.run(make))


def message(
    sender: str,
    to: str | list[str],
    subject: str = "Hello",
    body: str = "Hi there",
    *,
    cc: list[str] | None = None,
    msgid: str | None = None,
    in_reply_to: str | None = None,
    date: datetime | None = None,
    html: str | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = ", ".join(to) if isinstance(to, list) else to
    if cc:
        m["Cc"] = ", ".join(cc)
    m["Subject"] = subject
    m["Date"] = format_datetime(date or datetime.now(UTC))
    m["Message-ID"] = msgid or make_msgid(domain="test.example")
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    if html:
        m.add_alternative(html, subtype="html")
    return m.as_bytes()


def linked_meeting(
    s: Session,
    workspace_id: int,
    contact_id: int,
    *,
    uid: str,
    summary: str,
    start: datetime,
    length: timedelta,
    reason: str,
    **event: Any,
) -> CalendarEvent:
    """A meeting on a contact's timeline, as a calendar round leaves it."""
    ev = CalendarEvent(
        workspace_id=workspace_id,
        uid=uid,
        summary=summary,
        starts_at=start,
        ends_at=start + length,
        **event,
    )
    s.add(ev)
    s.flush()
    s.add(
        EventLink(
            workspace_id=workspace_id,
            event_id=ev.id,
            subject_type="contact",
            subject_id=contact_id,
            reason=reason,
            starts_at=start,
        )
    )
    return ev
