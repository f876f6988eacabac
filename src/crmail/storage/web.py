"""The web app's own records: passwords, sessions, and the queries its pages need.

Passwords are hashed with scrypt (a memory-hard KDF from the standard library) and a
per-user random salt; a session cookie value is stored only as its sha256, so a copy of
the database gives neither passwords nor live sessions. The CSRF token is stored as is:
it is useless without the session cookie it belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crmail.domain.inbox import ItemState
from crmail.errors import Forbidden, InvalidInput, NotFound
from crmail.mime.parse import extract_part
from crmail.storage import crm, visibility
from crmail.storage.message_reads import message_details
from crmail.storage.models import (
    Attachment,
    InboxItem,
    MessageRaw,
    User,
    WebSession,
    Workspace,
    utcnow,
)

SESSION_TTL = timedelta(days=7)
MIN_PASSWORD = 8

# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms per check: slow for an offline
# guesser, fine for a sign-in form that is rate limited anyway.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


# --- passwords ---------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.urlsafe_b64decode(salt_b64)
        expected = base64.urlsafe_b64decode(digest_b64)
        got = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


# Verified against when no user matches, so "no such user" costs as much time as "wrong
# password" and response times do not tell which addresses have accounts.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def set_password(s: Session, user_id: int, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD} characters")
    u = s.get(User, user_id)
    if u is None:
        raise NotFound(f"user {user_id} not found")
    u.password_hash = hash_password(password)
    # A new password ends every existing session (a reset after a leak must lock out).
    s.execute(delete(WebSession).where(WebSession.user_id == user_id))
    s.flush()


def check_password(s: Session, email: str, password: str) -> crm.UserInfo | None:
    """The user with this email and password, or None (same cost either way)."""
    addr = email.strip().lower()
    users = list(s.scalars(select(User).where(func.lower(User.email) == addr).order_by(User.id)))
    # One address may be a user in several workspaces; the password picks the one.
    match: User | None = None
    for u in users:
        if u.password_hash and verify_password(u.password_hash, password) and match is None:
            match = u
    if not any(u.password_hash for u in users):
        verify_password(_DUMMY_HASH, password)
    if match is not None and match.disabled_at is not None:
        # Said only to someone who knows the password: it reveals nothing to a guesser.
        raise Forbidden(
            "this user is disabled", hint="an admin of your workspace can enable it again"
        )
    return crm.get_user(s, match.workspace_id, match.id) if match else None


def users_by_email(s: Session, email: str) -> list[crm.UserInfo]:
    addr = email.strip().lower()
    rows = s.scalars(select(User).where(func.lower(User.email) == addr).order_by(User.id))
    return [crm.get_user(s, u.workspace_id, u.id) for u in rows]


# --- sessions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewSession:
    #: the cookie value: shown to the browser once, only its sha256 is stored
    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    user: crm.UserInfo
    csrf_token: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(s: Session, user_id: int, ttl: timedelta = SESSION_TTL) -> NewSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = utcnow() + ttl
    s.add(WebSession(user_id=user_id, token_hash=_hash(token), csrf_token=csrf, expires_at=expires))
    # Expired rows of this user are garbage: drop them while we are here.
    s.execute(
        delete(WebSession).where(WebSession.user_id == user_id, WebSession.expires_at < utcnow())
    )
    s.flush()
    return NewSession(token, csrf, expires)


def session_for(s: Session, token: str) -> SessionInfo | None:
    if not token:
        return None
    row = s.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))
    if row is None or row.expires_at <= utcnow():
        return None
    u = s.get(User, row.user_id)
    if u is None or u.disabled_at is not None:
        return None
    return SessionInfo(crm.get_user(s, u.workspace_id, u.id), row.csrf_token, row.expires_at)


def revoke_session(s: Session, token: str) -> None:
    s.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def session_hash(token: str) -> str:
    """What a session cookie is stored as: links signed for a session carry it."""
    return _hash(token)


def live_session_hashes(s: Session, user_id: int) -> list[str]:
    """The user's unexpired sessions, as :func:`session_hash` values."""
    rows = s.scalars(
        select(WebSession.token_hash).where(
            WebSession.user_id == user_id, WebSession.expires_at > utcnow()
        )
    )
    return list(rows)


# --- users of a workspace ----------------------------------------------------------------


def list_users(s: Session, workspace_id: int) -> list[crm.UserInfo]:
    rows = s.scalars(select(User).where(User.workspace_id == workspace_id).order_by(User.name))
    return [crm.UserInfo(u.id, u.workspace_id, u.email, u.name, u.role) for u in rows]


# --- inbox and threads -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxThread:
    """One row of the Inbox: a thread with the newest of its open items."""

    thread_id: int
    user_id: int
    latest: crm.InboxEntry
    count: int
    unread: bool
    #: why a change the user made to one of its emails could not reach the mailbox
    sync_error: str | None = None


def inbox_threads(
    s: Session, viewer: crm.UserInfo, user_ids: list[int], limit: int = 200
) -> list[InboxThread]:
    """Open items of these users (viewer's workspace only), grouped by thread, newest first."""
    rows: list[tuple[int, crm.InboxEntry]] = []
    for uid in user_ids:
        page = crm.inbox_for(s, viewer, uid, limit)
        rows.extend((uid, e) for e in page.items)
    rows.sort(key=lambda r: (r[1].received_at, r[1].id), reverse=True)
    grouped: dict[tuple[int, int], InboxThread] = {}
    for uid, e in rows:
        key = (uid, e.message.thread_id)
        g = grouped.get(key)
        if g is None:
            grouped[key] = InboxThread(e.message.thread_id, uid, e, 1, not e.is_read, e.sync_error)
        else:
            grouped[key] = InboxThread(
                g.thread_id,
                uid,
                g.latest,
                g.count + 1,
                g.unread or not e.is_read,
                g.sync_error or e.sync_error,
            )
    return list(grouped.values())


@dataclass(frozen=True, slots=True)
class ThreadView:
    id: int
    subject: str
    messages: tuple[crm.MessageDetail, ...]
    #: the viewer has open items of this thread in their own Inbox: Done/Snooze apply
    in_my_inbox: bool
    unread: bool


def thread_view(s: Session, user: crm.UserInfo, thread_id: int) -> ThreadView:
    # The rule's query is scoped to the viewer's workspace: another workspace's thread,
    # like one with nothing this viewer may see, is simply not found.
    visible = visibility.thread_messages(s, user, thread_id)
    if not visible:
        raise NotFound(f"thread {thread_id} not found")
    mine = list(
        s.scalars(
            select(InboxItem).where(
                InboxItem.user_id == user.id,
                InboxItem.thread_id == thread_id,
                InboxItem.state.in_([ItemState.OPEN.value, ItemState.SNOOZED.value]),
            )
        )
    )
    # All the thread's messages in one batch of queries, not a detail read per message.
    messages = tuple(message_details(s, user, visible))
    return ThreadView(
        thread_id,
        # Not the thread's stored subject: that is its first stored message's, which
        # may be one this viewer may not see.
        messages[0].summary.subject,
        messages,
        bool(mine),
        any(not i.is_read for i in mine),
    )


# --- message parts -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    filename: str | None
    content_type: str
    data: bytes


def _raw_if_visible(s: Session, user: crm.UserInfo, message_id: int) -> bytes:
    return crm.message_raw(s, user, message_id)  # 404 when not visible


def attachment_part(s: Session, user: crm.UserInfo, message_id: int, attachment_id: int) -> Part:
    raw = _raw_if_visible(s, user, message_id)
    rows = s.execute(
        select(Attachment.id, Attachment.placeholder_reason)
        .where(Attachment.message_id == message_id)
        .order_by(Attachment.id)
    ).all()
    ids = [r[0] for r in rows]
    if attachment_id not in ids:
        raise NotFound(f"attachment {attachment_id} not found")
    reason = rows[ids.index(attachment_id)][1]
    if reason:
        # Over the account's limit (or undecodable): shown as a placeholder, not served.
        raise NotFound(reason)
    # Attachment rows are stored in the order the parser met the parts.
    found = extract_part(raw, index=ids.index(attachment_id))
    if found is None:
        raise NotFound(f"attachment {attachment_id} is not in the stored message")
    return Part(*found)


def cid_part(s: Session, user: crm.UserInfo, message_id: int, content_id: str) -> Part:
    found = extract_part(_raw_if_visible(s, user, message_id), content_id=content_id)
    if found is None:
        raise NotFound("no such inline part")
    return Part(*found)


def has_raw(s: Session, message_id: int) -> bool:
    return s.get(MessageRaw, message_id) is not None


def user_by_id(s: Session, user_id: int) -> crm.UserInfo:
    u = s.get(User, user_id)
    if u is None:
        raise NotFound(f"user {user_id} not found")
    return crm.UserInfo(u.id, u.workspace_id, u.email, u.name, u.role)


def check_workspace(s: Session, workspace_id: int) -> None:
    if s.get(Workspace, workspace_id) is None:
        raise NotFound(f"workspace {workspace_id} not found")
