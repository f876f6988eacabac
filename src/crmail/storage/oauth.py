"""OAuth sign-ins under way (state, PKCE verifier, the session they belong to), and the
compare-and-set that stores refreshed tokens of an OAuth-connected account."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crmail.errors import NotFound
from crmail.storage.models import MailAccount, OAuthState, utcnow

#: how long a user has to finish the provider's consent screen
STATE_TTL = timedelta(minutes=15)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    user_id: int
    session_hash: str | None
    provider: str
    code_verifier: str


def save_state(
    s: Session,
    *,
    state: str,
    user_id: int,
    session_hash: str | None,
    provider: str,
    code_verifier: str,
    ttl: timedelta = STATE_TTL,
) -> None:
    now = utcnow()
    s.execute(delete(OAuthState).where(OAuthState.expires_at < now))
    s.add(
        OAuthState(
            state_hash=digest(state),
            user_id=user_id,
            session_hash=session_hash,
            provider=provider,
            code_verifier=code_verifier,
            expires_at=now + ttl,
        )
    )
    s.flush()


def take_state(s: Session, state: str) -> PendingSignIn | None:
    """The sign-in ``state`` belongs to, consumed (a second callback finds nothing)."""
    row = s.scalar(select(OAuthState).where(OAuthState.state_hash == digest(state)))
    if row is None:
        return None
    pending = PendingSignIn(row.user_id, row.session_hash, row.provider, row.code_verifier)
    expired = row.expires_at <= utcnow()
    # Deleted by its key and counted, so two callbacks racing cannot both consume it.
    gone: int = s.execute(delete(OAuthState).where(OAuthState.id == row.id)).rowcount  # type: ignore[attr-defined]
    s.flush()
    if expired or gone != 1:
        return None
    return pending


@dataclass(frozen=True, slots=True)
class OAuthAccount:
    provider: str
    secret: bytes


def oauth_account(s: Session, account_id: int) -> OAuthAccount:
    a = s.get(MailAccount, account_id)
    if a is None:
        raise NotFound(f"mail account {account_id} not found")
    provider = (a.settings or {}).get("oauth_provider")
    if not isinstance(provider, str) or not provider:
        raise NotFound(f"mail account {account_id} is not connected through OAuth")
    return OAuthAccount(provider, a.secret)


def replace_secret(s: Session, account_id: int, old: bytes, new: bytes) -> bool:
    """Store ``new`` only if ``old`` is still what is stored (sealed secrets are unique:
    Fernet draws a fresh IV each time, so the sealed bytes are the version)."""
    result = s.execute(
        update(MailAccount)
        .where(MailAccount.id == account_id, MailAccount.secret == old)
        .values(secret=new)
        .execution_options(synchronize_session=False)
    )
    s.flush()
    changed: int = result.rowcount  # type: ignore[attr-defined]
    return changed == 1
