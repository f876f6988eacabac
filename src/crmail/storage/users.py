"""Managing users: who is in a workspace, disabling and enabling them, changing passwords.

Disabling a user ends everything that lets them in at once, in the same transaction:
web sessions are deleted and API tokens revoked (re-enabling does not bring tokens
back: a leaked one must stay dead). A disabled user cannot sign in, and a token of
theirs, should one be issued meanwhile, is refused too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crmail.errors import Conflict, Forbidden, InvalidInput, NotFound, WrongPassword
from crmail.storage import crm, tokens
from crmail.storage import web as web_store
from crmail.storage.models import User, WebSession, utcnow


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    email: str
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


def _member(u: User) -> MemberInfo:
    return MemberInfo(u.id, u.email, u.name, u.role, u.created_at, u.disabled_at)


def require_admin(user: crm.UserInfo) -> None:
    if not user.is_admin:
        raise Forbidden("only an admin of the workspace can manage users")


def list_members(s: Session, admin: crm.UserInfo) -> list[MemberInfo]:
    require_admin(admin)
    rows = s.scalars(
        select(User).where(User.workspace_id == admin.workspace_id).order_by(User.email)
    )
    return [_member(u) for u in rows]


def _in_workspace(s: Session, admin: crm.UserInfo, user_id: int) -> User:
    require_admin(admin)
    u = s.get(User, user_id)
    if u is None or u.workspace_id != admin.workspace_id:
        raise NotFound(f"user {user_id} not found")
    return u


def end_sessions(s: Session, user_id: int, *, except_token: str = "") -> None:
    """Delete the user's web sessions, all but the one whose cookie is ``except_token``."""
    stmt = delete(WebSession).where(WebSession.user_id == user_id)
    if except_token:
        stmt = stmt.where(WebSession.token_hash != tokens.digest(except_token))
    s.execute(stmt)


def disable(s: Session, admin: crm.UserInfo, user_id: int) -> MemberInfo:
    u = _in_workspace(s, admin, user_id)
    if u.disabled_at is None:
        if u.role == "admin":
            others = s.scalar(
                select(func.count(User.id)).where(
                    User.workspace_id == u.workspace_id,
                    User.role == "admin",
                    User.disabled_at.is_(None),
                    User.id != u.id,
                )
            )
            if not others:
                raise Conflict(
                    "the last admin of a workspace cannot be disabled",
                    hint="make another user an admin first",
                )
        u.disabled_at = utcnow()
    # Again even when already disabled: whatever was issued meanwhile ends too.
    end_sessions(s, u.id)
    tokens.revoke_all(s, u.id)
    s.flush()
    return _member(u)


def enable(s: Session, admin: crm.UserInfo, user_id: int) -> MemberInfo:
    u = _in_workspace(s, admin, user_id)
    u.disabled_at = None
    s.flush()
    return _member(u)


def change_password(
    s: Session,
    user: crm.UserInfo,
    current: str,
    new: str,
    *,
    keep_session: str = "",
    revoke_tokens: bool = False,
) -> None:
    """The user changes their own password; every other web session ends (and, when
    asked, every API token). ``keep_session``: the cookie of the session asking, if any."""
    u = s.get_one(User, user.id)
    if not u.password_hash:
        raise InvalidInput(
            "this user has no web password yet",
            hint="an operator sets one with `crmail user set-password`",
        )
    if not web_store.verify_password(u.password_hash, current):
        raise WrongPassword("the current password is wrong")
    if len(new) < web_store.MIN_PASSWORD:
        raise InvalidInput(
            f"new_password: at least {web_store.MIN_PASSWORD} characters",
        )
    u.password_hash = web_store.hash_password(new)
    end_sessions(s, u.id, except_token=keep_session)
    if revoke_tokens:
        tokens.revoke_all(s, u.id)
    s.flush()


def find_by_email(s: Session, email: str, workspace_id: int | None = None) -> crm.UserInfo:
    """The one user with this address (in this workspace, when the address is in several)."""
    found = [
        u
        for u in web_store.users_by_email(s, email)
        if workspace_id is None or u.workspace_id == workspace_id
    ]
    if not found:
        raise NotFound(f"no user {email}")
    if len(found) > 1:
        raise InvalidInput(f"{email} is a user in several workspaces", hint="add --workspace-id")
    return found[0]


def set_disabled(s: Session, user_id: int, disabled: bool) -> MemberInfo:
    """Operator's switch (the CLI): no admin needed, and the last admin may be disabled."""
    u = s.get(User, user_id)
    if u is None:
        raise NotFound(f"user {user_id} not found")
    if disabled:
        u.disabled_at = u.disabled_at or utcnow()
        end_sessions(s, u.id)
        tokens.revoke_all(s, u.id)
    else:
        u.disabled_at = None
    s.flush()
    return _member(u)
