"""A user's own API tokens and password, and the workspace's users (admins only).

Tokens are the caller's own: another user's token id is 404, like one that does not
exist. A new token's secret is in the answer that creates it and nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import IdPath, In, Out
from crmail.storage import tokens, users

router = APIRouter(prefix="/api", tags=["users"])


class TokenIn(In):
    name: Annotated[str, Field(min_length=1, max_length=tokens.MAX_NAME)]
    expires_in_days: Annotated[int | None, Field(ge=1, le=tokens.MAX_DAYS)] = None


class TokenOut(Out):
    id: int
    name: str
    #: the token's first characters, to tell tokens apart
    prefix: str
    state: tokens.TokenState
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    #: the token itself: shown in this answer only, never again
    token: str


class PasswordIn(In):
    current_password: Annotated[str, Field(max_length=1024)]
    new_password: Annotated[str, Field(max_length=1024)]
    #: also revoke every API token of the user (a leak may have taken them too)
    revoke_tokens: bool = False


class MemberOut(Out):
    id: int
    email: str
    name: str
    role: str
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime


def _token_out(t: tokens.TokenInfo) -> TokenOut:
    return TokenOut(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        state=t.state(),
        created_at=t.created_at,
        last_used_at=t.last_used_at,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
    )


def _created(new: tokens.NewToken) -> TokenCreatedOut:
    return TokenCreatedOut(**_token_out(new.info).model_dump(), token=new.secret)


@router.get("/me/tokens")
async def list_tokens(user: CurrentUser, services: ServicesDep) -> list[TokenOut]:
    """Every token of the caller, revoked and expired ones included (oldest first)."""
    rows = await services.db.read(lambda s: tokens.list_for(s, user.id))
    return [_token_out(t) for t in rows]


@router.post("/me/tokens", status_code=201)
async def create_token(body: TokenIn, user: CurrentUser, services: ServicesDep) -> TokenCreatedOut:
    """A new token; the answer's ``token`` is the only time it is shown."""
    new = await services.db.write(
        lambda s: tokens.issue(s, user.id, body.name, expires_in_days=body.expires_in_days)
    )
    return _created(new)


@router.delete("/me/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: IdPath, user: CurrentUser, services: ServicesDep) -> Response:
    """Revoke the token at once: requests with it answer 401 ``token revoked``."""
    await services.db.write(lambda s: tokens.revoke(s, user.id, token_id))
    return Response(status_code=204)


@router.post("/me/tokens/{token_id}/rotate", status_code=201)
async def rotate_token(
    token_id: IdPath, user: CurrentUser, services: ServicesDep
) -> TokenCreatedOut:
    """A new token with the same name and lifetime; the old one is revoked now."""
    return _created(await services.db.write(lambda s: tokens.rotate(s, user.id, token_id)))


@router.post("/me/password", status_code=204)
async def change_password(body: PasswordIn, user: CurrentUser, services: ServicesDep) -> Response:
    """Change the caller's web password: every web session ends; with ``revoke_tokens``,
    every API token too (this request's included). After 5 wrong current passwords in
    5 minutes the user's attempts answer 429 with Retry-After."""
    await services.change_password(
        user, body.current_password, body.new_password, revoke_tokens=body.revoke_tokens
    )
    return Response(status_code=204)


def _member_out(m: users.MemberInfo) -> MemberOut:
    return MemberOut(
        id=m.id,
        email=m.email,
        name=m.name,
        role=m.role,
        disabled=m.disabled,
        disabled_at=m.disabled_at,
        created_at=m.created_at,
    )


@router.get("/users")
async def list_users(user: CurrentUser, services: ServicesDep) -> list[MemberOut]:
    """The workspace's users (admins only)."""
    rows = await services.db.read(lambda s: users.list_members(s, user))
    return [_member_out(m) for m in rows]


@router.post("/users/{user_id}/disable")
async def disable_user(user_id: IdPath, user: CurrentUser, services: ServicesDep) -> MemberOut:
    """Disable a user (admins only): their sessions end, their API tokens are revoked, and
    their mailboxes stop syncing and sending until they are enabled again."""
    member = await services.db.write(lambda s: users.disable(s, user, user_id))
    services.user_enabled_changed()
    return _member_out(member)


@router.post("/users/{user_id}/enable")
async def enable_user(user_id: IdPath, user: CurrentUser, services: ServicesDep) -> MemberOut:
    """Let a disabled user sign in again (they need new API tokens); their mailboxes
    resume syncing and their queued actions run."""
    member = await services.db.write(lambda s: users.enable(s, user, user_id))
    services.user_enabled_changed()
    return _member_out(member)
