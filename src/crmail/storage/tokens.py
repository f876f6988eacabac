"""API tokens: named, revocable, optionally expiring; only their sha256 is stored.

A token is shown once, when it is made. Checking one answers *why* it is refused
(revoked, expired, its user disabled), so a client knows whether to ask for a new one.
``last_used_at`` is written at most once a minute: reading a token must not cost a
write per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput, NotFound, Unauthenticated
from crmail.storage.models import ApiToken, User, utcnow

#: marks crmail's tokens, so secret scanners and people can recognise a leaked one
TOKEN_MARK = "crm_"
#: characters of a token kept in clear to tell tokens apart ("crm_" and 4 random ones)
PREFIX_LEN = 8
MAX_NAME = 100
MAX_DAYS = 3650
LAST_USED_EVERY = timedelta(minutes=1)

TokenState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> TokenState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class NewToken:
    info: TokenInfo
    #: the token itself: shown once, never stored
    secret: str


@dataclass(frozen=True, slots=True)
class Checked:
    """A token that may be used: whose it is, and whether its last use is worth recording."""

    token_id: int
    user_id: int
    stale: bool
    expires_at: datetime | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(t: ApiToken) -> TokenInfo:
    return TokenInfo(
        t.id, t.user_id, t.name, t.prefix, t.created_at, t.last_used_at, t.expires_at, t.revoked_at
    )


def _clean_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise InvalidInput("name: give the token a name (what uses it)")
    if len(clean) > MAX_NAME:
        raise InvalidInput(f"name: at most {MAX_NAME} characters")
    return clean


def _expiry(expires_in_days: int | None) -> datetime | None:
    if expires_in_days is None:
        return None
    if not 1 <= expires_in_days <= MAX_DAYS:
        raise InvalidInput(f"expires_in_days: between 1 and {MAX_DAYS}, or none")
    return utcnow() + timedelta(days=expires_in_days)


def issue(s: Session, user_id: int, name: str, *, expires_in_days: int | None = None) -> NewToken:
    secret = TOKEN_MARK + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user_id,
        name=_clean_name(name),
        token_hash=digest(secret),
        prefix=secret[:PREFIX_LEN],
        expires_at=_expiry(expires_in_days),
    )
    s.add(row)
    s.flush()
    return NewToken(_info(row), secret)


def check(s: Session, token: str, now: datetime | None = None) -> Checked:
    """The token's owner, or :class:`Unauthenticated` saying why it is refused."""
    now = now or utcnow()
    row = s.execute(
        select(ApiToken, User.disabled_at)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest(token))
    ).first()
    if row is None:
        raise Unauthenticated("invalid API token")
    t, disabled_at = row
    hint = "ask for a new token (Settings → API tokens, or an admin)"
    if t.revoked_at is not None:
        raise Unauthenticated("token revoked", hint=hint)
    if t.expires_at is not None and t.expires_at <= now:
        raise Unauthenticated("token expired", hint=hint)
    if disabled_at is not None:
        raise Unauthenticated("user disabled", hint="an admin of the workspace can enable it")
    stale = t.last_used_at is None or t.last_used_at <= now - LAST_USED_EVERY
    return Checked(t.id, t.user_id, stale, t.expires_at)


def touch(s: Session, token_id: int, now: datetime | None = None) -> None:
    """Record a use; a no-op when another request recorded one in the last minute."""
    now = now or utcnow()
    s.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
        # Bookkeeping: who may use the token is unchanged (see storage.auth_cache).
        .execution_options(auth_unchanged=True)
    )


def list_for(s: Session, user_id: int) -> list[TokenInfo]:
    rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    return [_info(t) for t in rows]


def _own(s: Session, user_id: int, token_id: int) -> ApiToken:
    t = s.get(ApiToken, token_id)
    # Another user's token is "not found": its id tells nothing.
    if t is None or t.user_id != user_id:
        raise NotFound(f"token {token_id} not found")
    return t


def revoke(s: Session, user_id: int, token_id: int) -> TokenInfo:
    """Revoke one of the user's tokens; revoking a revoked token changes nothing."""
    t = _own(s, user_id, token_id)
    if t.revoked_at is None:
        t.revoked_at = utcnow()
        s.flush()
    return _info(t)


def rotate(s: Session, user_id: int, token_id: int) -> NewToken:
    """A new token with the old one's name and lifetime; the old one stops working now."""
    old = _own(s, user_id, token_id)
    if old.revoked_at is not None:
        raise InvalidInput(f"token {token_id} is revoked", hint="create a new token instead")
    days = None
    if old.expires_at is not None:
        days = max(1, round((old.expires_at - old.created_at) / timedelta(days=1)))
    old.revoked_at = utcnow()
    return issue(s, user_id, old.name, expires_in_days=min(days, MAX_DAYS) if days else None)


def revoke_all(s: Session, user_id: int) -> int:
    """Revoke every live token of the user; how many were."""
    result = s.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
