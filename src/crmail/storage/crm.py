"""Workspaces, users, API tokens and the CRM side: contacts, leads, deals, timelines, inboxes.

Every function takes a ``Session`` first and returns frozen dataclasses, never ORM
objects, so callers (the API) cannot lazy-load or mutate rows outside the transaction.
Every lookup by id is scoped to a workspace: an id of another workspace is simply
"not found", which is what the API answers (404, no leak that the id exists).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, delete, exists, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from crmail.domain.addresses import normalize_email
from crmail.errors import Conflict, InvalidInput, NotFound
from crmail.storage import accounts, tokens, visibility
from crmail.storage.inbox_queries import inbox_for
from crmail.storage.message_reads import message_detail, message_raw, own_addresses
from crmail.storage.models import (
    Contact,
    ContactEmail,
    Deal,
    DealContact,
    Lead,
    MailAccount,
    User,
    Workspace,
)
from crmail.storage.paging import MAX_PAGE, clamp, decode_cursor, encode_cursor
from crmail.storage.timeline import SUBJECT_TYPES, timeline
from crmail.storage.views import (
    UNSET,
    Address,
    AttachmentInfo,
    InboxEntry,
    LinkInfo,
    MessageDetail,
    MessageSummary,
    Page,
    PlacementInfo,
    TimelineItem,
    Unset,
    UserInfo,
)

# The read side lives in its own modules; callers keep reaching it as ``crm.<name>``.
__all__ = [
    "MAX_PAGE",
    "SUBJECT_TYPES",
    "UNSET",
    "Address",
    "AttachmentInfo",
    "InboxEntry",
    "LinkInfo",
    "MessageDetail",
    "MessageSummary",
    "Page",
    "PlacementInfo",
    "TimelineItem",
    "Unset",
    "UserInfo",
    "decode_cursor",
    "encode_cursor",
    "inbox_for",
    "message_detail",
    "message_raw",
    "own_addresses",
    "timeline",
]

_Row = TypeVar("_Row", Contact, Lead, Deal)

ROLES = ("admin", "member")
DEAL_STATUSES = ("open", "won", "lost")


# --- value objects handed to the API ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class NewUser:
    user: UserInfo
    #: the plain API token; shown once, only its sha256 is stored
    token: str


@dataclass(frozen=True, slots=True)
class ContactInfo:
    id: int
    name: str
    emails: tuple[str, ...]
    lead_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LeadInfo:
    id: int
    name: str
    contact_ids: tuple[int, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DealInfo:
    id: int
    title: str
    status: str
    lead_id: int | None
    contact_ids: tuple[int, ...]
    value_cents: int | None
    created_at: datetime


# --- workspaces, users, tokens ------------------------------------------------------------


def create_workspace(s: Session, name: str) -> WorkspaceInfo:
    ws = Workspace(name=name)
    s.add(ws)
    s.flush()
    return WorkspaceInfo(ws.id, ws.name)


def create_user(
    s: Session, workspace_id: int, email: str, *, name: str = "", role: str = "member"
) -> NewUser:
    """A new user with a first API token, named "initial"."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    addr = _email_or_invalid(email)
    if s.scalar(select(User.id).where(User.workspace_id == workspace_id, User.email == addr)):
        raise Conflict(f"a user with {addr} already exists in this workspace")
    u = User(workspace_id=workspace_id, email=addr, name=name, role=role)
    s.add(u)
    s.flush()
    return NewUser(_user_info(u), tokens.issue(s, u.id, "initial").secret)


def user_for_token(s: Session, token: str) -> tuple[UserInfo, tokens.Checked]:
    """The user a usable API token belongs to; :class:`Unauthenticated` saying why not."""
    checked = tokens.check(s, token)
    return _user_info(s.get_one(User, checked.user_id)), checked


def get_user(s: Session, workspace_id: int, user_id: int) -> UserInfo:
    u = s.get(User, user_id)
    if u is None or u.workspace_id != workspace_id:
        raise NotFound(f"user {user_id} not found")
    return _user_info(u)


def _user_info(u: User) -> UserInfo:
    return UserInfo(u.id, u.workspace_id, u.email, u.name, u.role)


# --- contacts ------------------------------------------------------------------------------


def _email_or_invalid(raw: str) -> str:
    addr = normalize_email(raw)
    if addr is None:
        raise InvalidInput(f"{raw!r} is not a valid email address")
    return addr


def _normalize_emails(raw: Iterable[str]) -> list[str]:
    # Keep the client's order (the first address is the primary one) but drop duplicates
    # that only differ in case, which would otherwise hit the unique key.
    return list(dict.fromkeys(_email_or_invalid(e) for e in raw))


def _check_emails_free(
    s: Session, workspace_id: int, emails: Sequence[str], contact_id: int | None
) -> None:
    if not emails:
        return
    q = (
        select(ContactEmail.email, Contact.id, Contact.name)
        .join(Contact, Contact.id == ContactEmail.contact_id)
        .where(ContactEmail.workspace_id == workspace_id, ContactEmail.email.in_(emails))
    )
    if contact_id is not None:
        q = q.where(ContactEmail.contact_id != contact_id)
    taken = s.execute(q.order_by(ContactEmail.email)).first()
    if taken is not None:
        email, other_id, other_name = taken
        who = f"contact {other_id}" + (f" ({other_name})" if other_name else "")
        raise Conflict(
            f"{email} already belongs to {who}",
            hint="an address can belong to one contact only; edit or merge that contact",
        )


def _check_lead(s: Session, workspace_id: int, lead_id: int | None) -> None:
    if lead_id is not None:
        _lead_row(s, workspace_id, lead_id)


def create_contact(
    s: Session, workspace_id: int, *, name: str, emails: Iterable[str], lead_id: int | None = None
) -> ContactInfo:
    addrs = _normalize_emails(emails)
    _check_lead(s, workspace_id, lead_id)
    _check_emails_free(s, workspace_id, addrs, None)
    c = Contact(workspace_id=workspace_id, name=name, lead_id=lead_id)
    s.add(c)
    s.flush()
    s.add_all(ContactEmail(workspace_id=workspace_id, contact_id=c.id, email=e) for e in addrs)
    s.flush()
    return get_contact(s, workspace_id, c.id)


def update_contact(
    s: Session,
    workspace_id: int,
    contact_id: int,
    *,
    name: str | Unset = UNSET,
    emails: Iterable[str] | Unset = UNSET,
    lead_id: int | Unset | None = UNSET,
) -> ContactInfo:
    c = _contact_row(s, workspace_id, contact_id)
    if not isinstance(name, Unset):
        c.name = name
    if not isinstance(lead_id, Unset):
        _check_lead(s, workspace_id, lead_id)
        c.lead_id = lead_id
    if not isinstance(emails, Unset):
        addrs = _normalize_emails(emails)
        _check_emails_free(s, workspace_id, addrs, contact_id)
        # Replace: delete then insert in one transaction; flush between so the unique
        # key never sees an address twice.
        s.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact_id))
        s.flush()
        s.add_all(ContactEmail(workspace_id=workspace_id, contact_id=c.id, email=e) for e in addrs)
    s.flush()
    return get_contact(s, workspace_id, contact_id)


def _contact_row(s: Session, workspace_id: int, contact_id: int) -> Contact:
    c = s.get(Contact, contact_id)
    if c is None or c.workspace_id != workspace_id:
        raise NotFound(f"contact {contact_id} not found")
    return c


def _emails_of(s: Session, contact_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    if contact_ids:
        q = (
            select(ContactEmail.contact_id, ContactEmail.email)
            .where(ContactEmail.contact_id.in_(contact_ids))
            .order_by(ContactEmail.id)
        )
        for cid, email in s.execute(q):
            out.setdefault(cid, []).append(email)
    return {cid: tuple(v) for cid, v in out.items()}


def get_contact(s: Session, workspace_id: int, contact_id: int) -> ContactInfo:
    c = _contact_row(s, workspace_id, contact_id)
    emails = _emails_of(s, [c.id]).get(c.id, ())
    return ContactInfo(c.id, c.name, emails, c.lead_id, c.created_at)


def list_contacts(
    s: Session,
    workspace_id: int,
    *,
    lead_id: int | None = None,
    email: str | None = None,
    limit: int = 100,
    offset: int = 0,
    after: int | None = None,
) -> list[ContactInfo]:
    """Contacts in id order; ``after`` (the last id of the previous page) is the cheap way
    to page: an ``offset`` still works but reads and skips every row before it."""
    q = select(Contact).where(Contact.workspace_id == workspace_id)
    if lead_id is not None:
        q = q.where(Contact.lead_id == lead_id)
    if email is not None:
        addr = normalize_email(email)
        q = q.where(
            exists().where(
                ContactEmail.contact_id == Contact.id, ContactEmail.email == (addr or "")
            )
        )
    rows = list(s.scalars(_paged(q, Contact.id, limit, offset, after)))
    emails = _emails_of(s, [c.id for c in rows])
    return [ContactInfo(c.id, c.name, emails.get(c.id, ()), c.lead_id, c.created_at) for c in rows]


# --- leads ---------------------------------------------------------------------------------


def _lead_row(s: Session, workspace_id: int, lead_id: int) -> Lead:
    lead = s.get(Lead, lead_id)
    if lead is None or lead.workspace_id != workspace_id:
        raise NotFound(f"lead {lead_id} not found")
    return lead


def _lead_info(s: Session, lead: Lead) -> LeadInfo:
    ids = s.scalars(select(Contact.id).where(Contact.lead_id == lead.id).order_by(Contact.id))
    return LeadInfo(lead.id, lead.name, tuple(ids), lead.created_at)


def create_lead(s: Session, workspace_id: int, *, name: str) -> LeadInfo:
    lead = Lead(workspace_id=workspace_id, name=name)
    s.add(lead)
    s.flush()
    return _lead_info(s, lead)


def get_lead(s: Session, workspace_id: int, lead_id: int) -> LeadInfo:
    return _lead_info(s, _lead_row(s, workspace_id, lead_id))


def update_lead(
    s: Session, workspace_id: int, lead_id: int, *, name: str | Unset = UNSET
) -> LeadInfo:
    lead = _lead_row(s, workspace_id, lead_id)
    if not isinstance(name, Unset):
        lead.name = name
    s.flush()
    return _lead_info(s, lead)


def list_leads(
    s: Session,
    workspace_id: int,
    *,
    limit: int = 100,
    offset: int = 0,
    after: int | None = None,
) -> list[LeadInfo]:
    leads = select(Lead).where(Lead.workspace_id == workspace_id)
    rows = list(s.scalars(_paged(leads, Lead.id, limit, offset, after)))
    members: dict[int, list[int]] = {}
    if rows:
        q = (
            select(Contact.lead_id, Contact.id)
            .where(Contact.lead_id.in_([r.id for r in rows]))
            .order_by(Contact.id)
        )
        for lid, cid in s.execute(q):
            if lid is not None:
                members.setdefault(lid, []).append(cid)
    return [LeadInfo(r.id, r.name, tuple(members.get(r.id, ())), r.created_at) for r in rows]


# --- deals ---------------------------------------------------------------------------------


def _deal_row(s: Session, workspace_id: int, deal_id: int) -> Deal:
    d = s.get(Deal, deal_id)
    if d is None or d.workspace_id != workspace_id:
        raise NotFound(f"deal {deal_id} not found")
    return d


def _deal_contacts(s: Session, deal_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    out: dict[int, list[int]] = {}
    if deal_ids:
        q = (
            select(DealContact.deal_id, DealContact.contact_id)
            .where(DealContact.deal_id.in_(deal_ids))
            .order_by(DealContact.contact_id)
        )
        for did, cid in s.execute(q):
            out.setdefault(did, []).append(cid)
    return {k: tuple(v) for k, v in out.items()}


def _deal_info(d: Deal, contact_ids: tuple[int, ...]) -> DealInfo:
    return DealInfo(d.id, d.title, d.status, d.lead_id, contact_ids, d.value_cents, d.created_at)


def _check_status(status: str) -> None:
    if status not in DEAL_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DEAL_STATUSES)}")


def _check_contacts(s: Session, workspace_id: int, contact_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(contact_ids))
    if not ids:
        return ids
    q = select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.id.in_(ids))
    found = set(s.scalars(q))
    missing = [i for i in ids if i not in found]
    if missing:
        # Same answer for "no such id" and "another workspace's id": no leak.
        raise NotFound(f"contact {missing[0]} not found")
    return ids


def create_deal(
    s: Session,
    workspace_id: int,
    *,
    title: str,
    status: str = "open",
    lead_id: int | None = None,
    contact_ids: Sequence[int] = (),
    value_cents: int | None = None,
) -> DealInfo:
    _check_status(status)
    _check_lead(s, workspace_id, lead_id)
    ids = _check_contacts(s, workspace_id, contact_ids)
    d = Deal(
        workspace_id=workspace_id,
        title=title,
        status=status,
        lead_id=lead_id,
        value_cents=value_cents,
    )
    s.add(d)
    s.flush()
    s.add_all(DealContact(deal_id=d.id, contact_id=cid) for cid in ids)
    s.flush()
    return get_deal(s, workspace_id, d.id)


def update_deal(
    s: Session,
    workspace_id: int,
    deal_id: int,
    *,
    title: str | Unset = UNSET,
    status: str | Unset = UNSET,
    lead_id: int | Unset | None = UNSET,
    contact_ids: Sequence[int] | Unset = UNSET,
    value_cents: int | Unset | None = UNSET,
) -> DealInfo:
    d = _deal_row(s, workspace_id, deal_id)
    if not isinstance(title, Unset):
        d.title = title
    if not isinstance(status, Unset):
        _check_status(status)
        d.status = status
    if not isinstance(lead_id, Unset):
        _check_lead(s, workspace_id, lead_id)
        d.lead_id = lead_id
    if not isinstance(value_cents, Unset):
        d.value_cents = value_cents
    if not isinstance(contact_ids, Unset):
        ids = _check_contacts(s, workspace_id, contact_ids)
        s.execute(delete(DealContact).where(DealContact.deal_id == deal_id))
        s.add_all(DealContact(deal_id=deal_id, contact_id=cid) for cid in ids)
    s.flush()
    return get_deal(s, workspace_id, deal_id)


def get_deal(s: Session, workspace_id: int, deal_id: int) -> DealInfo:
    d = _deal_row(s, workspace_id, deal_id)
    return _deal_info(d, _deal_contacts(s, [d.id]).get(d.id, ()))


def list_deals(
    s: Session,
    workspace_id: int,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    after: int | None = None,
) -> list[DealInfo]:
    q = select(Deal).where(Deal.workspace_id == workspace_id)
    if status is not None:
        _check_status(status)
        q = q.where(Deal.status == status)
    rows = list(s.scalars(_paged(q, Deal.id, limit, offset, after)))
    contacts = _deal_contacts(s, [d.id for d in rows])
    return [_deal_info(d, contacts.get(d.id, ())) for d in rows]


def _paged(
    q: Select[_Row],
    id_col: InstrumentedAttribute[int],
    limit: int,
    offset: int,
    after: int | None,
) -> Select[_Row]:
    if after is not None:
        q = q.where(id_col > after)
    return q.order_by(id_col).limit(clamp(limit)).offset(max(0, offset))


# --- mail accounts, as the API shows them ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """A mail account without its secret: the only shape an account leaves storage in for the API."""

    id: int
    user_id: int
    email: str
    provider: str
    settings: dict[str, object]
    state: str
    last_error: str | None
    last_error_code: str | None
    last_sync_at: datetime | None
    created_at: datetime


def _account_view(a: MailAccount) -> AccountView:
    settings = {k: v for k, v in (a.settings or {}).items() if k not in _SECRET_KEYS}
    return AccountView(
        a.id,
        a.user_id,
        a.email,
        a.provider,
        settings,
        a.state,
        a.last_error,
        a.last_error_code,
        a.last_sync_at,
        a.created_at,
    )


# Defence in depth: secrets live in MailAccount.secret, but should one ever slip into
# settings it is still not shown.
_SECRET_KEYS = frozenset({"password", "secret", "token", "access_token", "refresh_token"})


def _account_row(s: Session, user: UserInfo, account_id: int) -> MailAccount:
    """The account if the user may see it (its owner, or an admin of its workspace)."""
    a = s.get(MailAccount, account_id)
    if (
        a is None
        or a.workspace_id != user.workspace_id
        or (a.user_id != user.id and not user.is_admin)
    ):
        raise NotFound(f"mail account {account_id} not found")
    return a


def find_account(s: Session, user_id: int, email: str) -> int | None:
    return s.scalar(
        select(MailAccount.id).where(
            MailAccount.user_id == user_id, MailAccount.email == email.lower()
        )
    )


def list_accounts(s: Session, user: UserInfo, *, all_users: bool = False) -> list[AccountView]:
    q = select(MailAccount).where(MailAccount.workspace_id == user.workspace_id)
    if not (all_users and user.is_admin):
        q = q.where(MailAccount.user_id == user.id)
    return [_account_view(a) for a in s.scalars(q.order_by(MailAccount.id))]


def get_account(s: Session, user: UserInfo, account_id: int) -> AccountView:
    return _account_view(_account_row(s, user, account_id))


def check_account_visible(s: Session, user: UserInfo, account_id: int) -> None:
    _account_row(s, user, account_id)


def delete_account(s: Session, user: UserInfo, account_id: int) -> None:
    """Remove a mail account; see :func:`crmail.storage.accounts.delete_account`."""
    accounts.delete_account(s, user, account_id)


def add_account(
    s: Session,
    user: UserInfo,
    *,
    email: str,
    settings: dict[str, object],
    secret: bytes,
    provider: str = "imap",
) -> AccountView:
    # Checked again here (the route checks before the slow login test) because two
    # requests may race between that check and this write.
    if find_account(s, user.id, email) is not None:
        raise Conflict(f"{email} is already connected")
    account_id = accounts.create_account(
        s,
        workspace_id=user.workspace_id,
        user_id=user.id,
        email=email,
        provider=provider,
        settings=settings,
        secret=secret,
    )
    return get_account(s, user, account_id)


def account_status(
    s: Session, user: UserInfo, account_id: int
) -> tuple[AccountView, accounts.AccountStatus]:
    view = get_account(s, user, account_id)
    return view, accounts.status(s, account_id)


def inbox(
    s: Session,
    user_id: int,
    limit: int = 50,
    before: str | None = None,
    include_read: bool = True,
) -> Page[InboxEntry]:
    """The user's own open CRM Inbox items, newest first."""
    u = s.get_one(User, user_id)
    return inbox_for(s, _user_info(u), user_id, limit, before, include_read)


def can_see_message(s: Session, user: UserInfo, message_id: int) -> bool:
    """The visibility rule (:mod:`crmail.storage.visibility`) for one message."""
    return visibility.can_see(s, user, message_id)
