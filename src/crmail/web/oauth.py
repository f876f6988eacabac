"""Settings → Email → "Connect with Google / Microsoft", and the providers' callback."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from crmail.config import Settings
from crmail.providers.oauth import configured_providers
from crmail.providers.oauth.registry import GOOGLE, MICROSOFT, missing_setup
from crmail.sync import oauth
from crmail.web.common import SESSION_COOKIE, WebAction, WebRoute, WebUser, see_other

router = APIRouter(route_class=WebRoute, include_in_schema=False)

_Param = Annotated[str, Query(max_length=4000)]


@router.post("/settings/email/oauth/{provider}/start")
async def start(provider: str, request: Request, web: WebAction) -> Response:
    url = await oauth.start_sign_in(
        web.services, web.user, provider, session_token=request.cookies.get(SESSION_COOKIE, "")
    )
    return RedirectResponse(url, status_code=303)


@router.get("/oauth/{provider}/callback")
async def callback(
    provider: str,
    request: Request,
    web: WebUser,
    state: _Param = "",
    code: _Param = "",
    error: _Param = "",
    error_description: _Param = "",
) -> Response:
    """Where the provider sends the browser back; errors are shown as a page in words."""
    connected = await oauth.finish_sign_in(
        web.services,
        web.user,
        provider,
        session_token=request.cookies.get(SESSION_COOKIE, ""),
        state=state,
        code=code,
        error=error,
        error_description=error_description,
    )
    return see_other(f"/settings/email/accounts/{connected.account_id}")


def buttons(settings: Settings) -> dict[str, object]:
    """What the settings page shows: the configured buttons, and why others are missing."""
    shown = configured_providers(settings)
    keys = {p.key for p in shown}
    labels = {GOOGLE: "Google", MICROSOFT: "Microsoft"}
    missing = [
        f"Connect with {labels[k]} is not available: {missing_setup(settings, k)}."
        for k in (GOOGLE, MICROSOFT)
        if k not in keys
    ]
    return {"oauth_providers": shown, "oauth_missing": missing}


def allow_consent_redirects(resp: Response, settings: Settings) -> Response:
    """The Connect buttons' form posts end in a redirect to the provider's consent page,
    which the page's ``form-action 'self'`` would block: allow exactly those origins."""
    origins = sorted(
        {
            f"{u.scheme}://{u.netloc}"
            for p in configured_providers(settings)
            if (u := urlsplit(p.authorize_url)).netloc
        }
    )
    csp = resp.headers.get("Content-Security-Policy")
    if origins and csp:
        resp.headers["Content-Security-Policy"] = csp.replace(
            "form-action 'self'", "form-action 'self' " + " ".join(origins)
        )
    return resp
