"""Auto-created contacts: the writes behind :mod:`crmail.domain.autocreate`.

Contacts are created in the caller's transaction, before the message that brought them
is stored, so that message links to them at arrival like any contact's mail (and so
passes the "contacts" scope).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.domain.autocreate import (
    BLOCKLIST_SETTING,
    Blocklist,
    Mail,
    Options,
    blocklist_entry,
    new_contacts,
)
from crmail.domain.scope import AddressBook, ContactRef
from crmail.errors import Forbidden, InvalidInput, NotFound
from crmail.mime import Address, Envelope
from crmail.storage.models import Contact, ContactEmail, MailAccount, Workspace
from crmail.storage.views import UserInfo

#: entries a workspace's blocklist holds at most
MAX_BLOCKLIST = 1000


def blocklist(s: Session, workspace_id: int) -> Blocklist:
    return Blocklist.parse(blocklist_entries(s, workspace_id))


def blocklist_entries(s: Session, workspace_id: int) -> list[str]:
    """The workspace's blocklist as stored: addresses and ``@domains``, in order."""
    ws = s.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    stored = (ws.settings or {}).get(BLOCKLIST_SETTING)
    return [str(e) for e in stored] if isinstance(stored, list) else []


def set_blocklist(s: Session, workspace_id: int, entries: Iterable[str]) -> list[str]:
    """Replace the blocklist (operators, via the CLI); every entry must be valid.

    Applies to mail synced from now on: contacts created before stay.
    """
    ws = s.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    clean: list[str] = []
    bad: list[str] = []
    for raw in entries:
        entry = blocklist_entry(raw)
        if entry is None:
            bad.append(raw)
        elif entry not in clean:
            clean.append(entry)
    if bad:
        raise InvalidInput(
            f"not an address or @domain: {', '.join(repr(b[:100]) for b in bad[:5])}",
            hint="give addresses (boss@partner.test) or whole domains (@competitor.test)",
        )
    if len(clean) > MAX_BLOCKLIST:
        raise InvalidInput(f"the blocklist holds at most {MAX_BLOCKLIST} entries")
    # A new dict: SQLAlchemy's JSON column notices reassignment, not in-place changes.
    ws.settings = {**(ws.settings or {}), BLOCKLIST_SETTING: clean}
    s.flush()
    return clean


def replace_blocklist(s: Session, user: UserInfo, entries: Iterable[str]) -> list[str]:
    """Replace the user's workspace blocklist: an admin's decision (API and web app)."""
    if not user.is_admin:
        raise Forbidden(
            "only a workspace admin can change the auto-create blocklist",
            hint="ask an admin of your workspace",
        )
    return set_blocklist(s, user.workspace_id, entries)


def mail_of(env: Envelope, extra_bcc: Iterable[Address] = ()) -> Mail:
    """``extra_bcc``: Bcc recipients the headers do not show (a CRM send)."""
    return Mail(
        from_=tuple(a.email for a in env.from_),
        recipients=tuple((a.email, a.name) for a in (*env.to, *env.cc, *env.bcc, *extra_bcc)),
        is_bulk=env.is_bulk,
    )


def create_contacts(
    s: Session, workspace_id: int, wanted: Mapping[str, str]
) -> dict[str, ContactRef]:
    """One contact per new address (email -> display name); returns them all by email.

    An address that became a contact meanwhile is returned as it is, not created twice.
    Writes go through the single writer thread (or one API transaction), and the
    (workspace, email) unique key stops any other race.
    """
    emails = sorted(wanted)
    if not emails:
        return {}
    out: dict[str, ContactRef] = {}
    existing = dict(
        s.execute(
            select(ContactEmail.email, ContactEmail.contact_id).where(
                ContactEmail.workspace_id == workspace_id, ContactEmail.email.in_(emails)
            )
        ).all()
    )
    for email in emails:
        if email in existing:
            contact_id = existing[email]
            lead = s.scalar(select(Contact.lead_id).where(Contact.id == contact_id))
            out[email] = ContactRef(contact_id, lead)
            continue
        c = Contact(workspace_id=workspace_id, name=(wanted[email] or email)[:300])
        s.add(c)
        s.flush()
        s.add(ContactEmail(workspace_id=workspace_id, contact_id=c.id, email=email))
        out[email] = ContactRef(c.id, None)
    s.flush()
    return out


def with_contacts(book: AddressBook, new: Mapping[str, ContactRef]) -> AddressBook:
    if not new:
        return book
    return AddressBook({**book.contacts, **new}, book.own, book.version)


def for_message(
    s: Session,
    account_id: int | None,
    env: Envelope,
    book: AddressBook,
    *,
    extra_bcc: Iterable[Address] = (),
) -> AddressBook:
    """Create the contacts one message calls for (per its account's options); the book
    with them added."""
    if account_id is None:  # sent through the default provider: no account, no option
        return book
    a = s.get_one(MailAccount, account_id)
    options = Options.of(a.settings or {})
    if not options.any:
        return book
    wanted = new_contacts(
        mail_of(env, extra_bcc),
        account_email=a.email,
        options=options,
        own=book.own,
        known=book.contacts,
        blocklist=blocklist(s, a.workspace_id),
    )
    return with_contacts(book, create_contacts(s, a.workspace_id, wanted))
