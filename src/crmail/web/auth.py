"""Sign in and sign out."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from crmail.storage import web as store
from crmail.web.common import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    CsrfFailed,
    RateLimited,
    WebAction,
    WebRoute,
    page,
    safe_next,
    see_other,
    services_of,
)
from crmail.web.ratelimit import FailureLimiter

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _limiter(request: Request) -> FailureLimiter:
    limiter: FailureLimiter = request.app.state.web_signin_limiter
    return limiter


def _signin_form(
    request: Request,
    token: str,
    *,
    next_url: str,
    email: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    resp = page(
        request,
        "signin.html",
        status,
        user=None,
        csrf=token,
        next=next_url,
        email=email,
        error=error,
    )
    resp.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=services_of(request).settings.cookie_secure,
    )
    return resp


@router.get("/signin")
async def signin_page(request: Request, next: str = "/inbox") -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    return _signin_form(request, token, next_url=safe_next(next))


@router.post("/signin")
async def signin(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/inbox",
) -> Response:
    # Login CSRF: the form's token must match the cookie set with the form.
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        raise CsrfFailed("the sign-in form expired", hint="reload the page and sign in again")
    services = services_of(request)
    key = (request.client.host if request.client else "?", email.strip().lower())
    limiter = _limiter(request)
    wait = limiter.retry_after(key)
    if wait is not None:
        raise RateLimited("too many failed sign-ins for this address", retry_after=wait)
    user = await services.db.read(lambda s: store.check_password(s, email, password))
    if user is None:
        limiter.failed(key)
        return _signin_form(
            request,
            cookie,
            next_url=safe_next(next),
            email=email,
            error="Wrong email or password.",
            status=401,
        )
    limiter.succeeded(key)
    new = await services.db.write(lambda s: store.create_session(s, user.id))
    resp = see_other(safe_next(next))
    resp.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=int(store.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=services.settings.cookie_secure,
        path="/",
    )
    resp.delete_cookie(SIGNIN_COOKIE)
    return resp


@router.post("/signout")
async def signout(request: Request, web: WebAction) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await web.services.db.write(lambda s: store.revoke_session(s, token))
    resp = see_other("/signin")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
