"""Sign in and sign out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from crmail.storage import web as store
from crmail.web.common import (
    SESSION_COOKIE,
    CsrfFailed,
    RateLimited,
    WebAction,
    WebRoute,
    page,
    safe_next,
    see_other,
    services_of,
    signin_cookie,
    signing_key,
)
from crmail.web.ratelimit import SignInLimiter

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _limiter(request: Request) -> SignInLimiter:
    limiter: SignInLimiter = request.app.state.web_signin_limiter
    return limiter


# Login CSRF: without a check, a page elsewhere could post its own credentials to this
# form and sign the victim into the attacker's account (what they then type lands there).
# There is no session yet to hold a token, so the form's token is bound to a random
# pre-session id kept in a cookie: token = HMAC(server key, id). A page that can plant a
# cookie (a sibling subdomain, a plain-http page of the same host) cannot make the token
# that goes with it; the ``__Host-`` prefix (over HTTPS) stops the planting too, and a
# browser's Sec-Fetch-Site header stops a cross-site post outright.


def _form_token(request: Request, presession: str) -> str:
    key = signing_key(services_of(request), "signin")
    return hmac.new(key, presession.encode(), hashlib.sha256).hexdigest()


def _presession(request: Request) -> str:
    secure = services_of(request).settings.cookie_secure
    value = request.cookies.get(signin_cookie(secure), "")
    return value if 20 <= len(value) <= 100 else ""


def _client_ip(request: Request) -> str:
    # The peer, or the client a trusted proxy names (ProxyHeadersMiddleware, installed
    # only for CRMAIL_TRUSTED_PROXIES): a forwarded-for header from others is ignored.
    return request.client.host if request.client else "?"


def _signin_form(
    request: Request,
    presession: str,
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
        csrf=_form_token(request, presession),
        next=next_url,
        email=email,
        error=error,
    )
    secure = services_of(request).settings.cookie_secure
    resp.set_cookie(
        signin_cookie(secure),
        presession,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    return resp


@router.get("/signin")
async def signin_page(request: Request, next: str = "/inbox") -> Response:
    presession = _presession(request) or secrets.token_urlsafe(32)
    return _signin_form(request, presession, next_url=safe_next(next))


@router.post("/signin")
async def signin(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/inbox",
) -> Response:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise CsrfFailed("sign-in from another site is refused", hint="open the sign-in page")
    presession = _presession(request)
    expected = _form_token(request, presession) if presession else ""
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise CsrfFailed("the sign-in form expired", hint="reload the page and sign in again")
    services = services_of(request)
    ip, account = _client_ip(request), email.strip().lower()
    limiter = _limiter(request)
    blocked = limiter.blocked(ip, account)
    if blocked is not None:
        raise RateLimited(
            f"too many failed sign-ins for {blocked.what}", retry_after=blocked.retry_after
        )
    user = await services.db.read(lambda s: store.check_password(s, email, password))
    if user is None:
        limiter.failed(ip, account)
        return _signin_form(
            request,
            presession,
            next_url=safe_next(next),
            email=email,
            error="Wrong email or password.",
            status=401,
        )
    limiter.succeeded(ip, account)
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
    resp.delete_cookie(signin_cookie(services.settings.cookie_secure), path="/")
    return resp


@router.post("/signout")
async def signout(request: Request, web: WebAction) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await web.services.db.write(lambda s: store.revoke_session(s, token))
    resp = see_other("/signin")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
