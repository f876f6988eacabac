"""Settings → Security: the user's API tokens and password; Settings → Users for admins.

A new token's secret is in the page that answers the form (never in a URL or a
redirect), shown once. Changing the password keeps this browser signed in and ends
every other session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from crmail.errors import CrmailError, InvalidInput, RateLimited
from crmail.storage import tokens, users
from crmail.web.common import SESSION_COOKIE, Web, WebAction, WebRoute, WebUser, see_other

router = APIRouter(prefix="/settings", route_class=WebRoute, include_in_schema=False)


async def _security_page(
    web: Web,
    *,
    new_token: tokens.NewToken | None = None,
    token_error: CrmailError | None = None,
    password_error: CrmailError | None = None,
    password_changed: bool = False,
    status: int = 200,
) -> Response:
    me = web.user
    rows = await web.services.db.read(lambda s: tokens.list_for(s, me.id))
    return web.render(
        "settings_security.html",
        status,
        tokens=list(reversed(rows)),
        new_token=new_token,
        token_error=token_error,
        password_error=password_error,
        password_changed=password_changed,
    )


@router.get("/security")
async def security(web: WebUser) -> Response:
    return await _security_page(web)


@router.post("/security/tokens")
async def create_token(
    web: WebAction,
    name: Annotated[str, Form(max_length=tokens.MAX_NAME)] = "",
    expires_in_days: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    me = web.user
    days = int(expires_in_days) if expires_in_days.strip().isdigit() else None
    try:
        new = await web.services.db.write(
            lambda s: tokens.issue(s, me.id, name, expires_in_days=days)
        )
    except CrmailError as err:
        return await _security_page(web, token_error=err, status=err.http_status)
    return await _security_page(web, new_token=new, status=201)


@router.post("/security/tokens/{token_id}/revoke")
async def revoke_token(token_id: int, web: WebAction) -> Response:
    me = web.user
    await web.services.db.write(lambda s: tokens.revoke(s, me.id, token_id))
    return see_other("/settings/security#tokens")


@router.post("/security/password")
async def change_password(
    web: WebAction,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirm_password: Annotated[str, Form(max_length=1024)] = "",
    revoke_tokens: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    me = web.user
    keep = web.request.cookies.get(SESSION_COOKIE, "")

    try:
        if new_password != confirm_password:
            raise InvalidInput("the new password and its confirmation differ")
        await web.services.change_password(
            me,
            current_password,
            new_password,
            keep_session=keep,
            revoke_tokens=revoke_tokens == "on",
        )
    except CrmailError as err:
        page = await _security_page(web, password_error=err, status=err.http_status)
        if isinstance(err, RateLimited):
            page.headers["Retry-After"] = str(err.retry_after)
        return page
    return await _security_page(web, password_changed=True)


# --- the workspace's users (admins) ---------------------------------------------------------


@router.get("/users")
async def list_users(web: WebUser) -> Response:
    me = web.user
    rows = await web.services.db.read(lambda s: users.list_members(s, me))
    return web.render("settings_users.html", members=rows)


@router.post("/users/{user_id}/disable")
async def disable_user(user_id: int, web: WebAction) -> Response:
    me = web.user
    await web.services.db.write(lambda s: users.disable(s, me, user_id))
    web.services.user_enabled_changed()
    # Disabling oneself (one admin of several) ends this session too.
    return see_other("/signin" if user_id == me.id else "/settings/users")


@router.post("/users/{user_id}/enable")
async def enable_user(user_id: int, web: WebAction) -> Response:
    me = web.user
    await web.services.db.write(lambda s: users.enable(s, me, user_id))
    web.services.user_enabled_changed()
    return see_other("/settings/users")
