"""What every web route shares: templates, the signed-in user, CSRF, and error pages.

Web routes use :class:`WebRoute`, which turns crmail's errors into an HTML page with the
error's status (or the API's JSON shape when the client did not ask for HTML), and an
anonymous visitor into a redirect to the sign-in page (pages) or a 401 (raw routes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from crmail.errors import CrmailError, Forbidden, InvalidInput, Unauthenticated
from crmail.errors import RateLimited as RateLimited  # re-exported: one class, in errors.py
from crmail.services import Services
from crmail.storage import web as store
from crmail.storage.crm import UserInfo

SESSION_COOKIE = "crmail_session"
#: the sign-in form's pre-session id (there is no session to hold its CSRF token yet);
#: ``__Host-`` prefixed when cookies are Secure (see :func:`signin_cookie`)
SIGNIN_COOKIE = "crmail_signin"
#: tag of routes that answer 401 rather than redirecting (iframe bodies, downloads)
RAW = "web-raw"

#: the web app's own pages: scripts and styles from our origin only, framed by nobody.
#: frame-src 'self' lets the message-body iframe load.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _fmt_date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} GB"


templates.env.filters["date"] = _fmt_date
templates.env.filters["size"] = _fmt_size


class SignInRequired(Unauthenticated):
    pass


class CsrfFailed(Forbidden):
    code = "csrf_failed"


def signin_cookie(secure: bool) -> str:
    """The pre-session cookie's name. Over HTTPS the ``__Host-`` prefix makes browsers
    refuse it from a sibling subdomain or a plain-http page (cookie tossing)."""
    return f"__Host-{SIGNIN_COOKIE}" if secure else SIGNIN_COOKIE


def signing_key(services: Services, purpose: str) -> bytes:
    """A key for one kind of signed value, derived from the server's secret key."""
    secret = services.settings.secret_keys[0]
    return hashlib.sha256(f"crmail-web-{purpose}\0{secret}".encode()).digest()


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@dataclass(frozen=True, slots=True)
class Web:
    """The signed-in user of a web request, with what rendering a page needs."""

    request: Request
    services: Services
    user: UserInfo
    csrf: str

    def render(self, template: str, status_code: int = 200, /, **context: Any) -> HTMLResponse:
        # Positional-only: "status" is a template variable on the sync-health pages.
        return page(self.request, template, status_code, user=self.user, csrf=self.csrf, **context)


def page(
    request: Request, template: str, status_code: int = 200, /, **context: Any
) -> HTMLResponse:
    resp = templates.TemplateResponse(request, template, context, status_code=status_code)
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    # Pages show private mail: never from a shared cache or the back-forward cache.
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def signed_in(request: Request) -> Web:
    services = services_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    info = await services.db.read(lambda s: store.session_for(s, token)) if token else None
    if info is None:
        raise SignInRequired("sign in first")
    return Web(request, services, info.user, info.csrf_token)


async def csrf_checked(request: Request, web: Annotated[Web, Depends(signed_in)]) -> Web:
    """Every state-changing web request carries the session's CSRF token (form or header)."""
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # cached: the route's Form() fields read it again
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else ""
    if not sent or not hmac.compare_digest(sent.encode(), web.csrf.encode()):
        raise CsrfFailed(
            "the form's security token is missing or wrong",
            hint="reload the page and try again",
        )
    return web


WebUser = Annotated[Web, Depends(signed_in)]
WebAction = Annotated[Web, Depends(csrf_checked)]


def see_other(url: str) -> RedirectResponse:
    """After a POST: the browser follows with a GET (no resubmission on reload)."""
    return RedirectResponse(url, status_code=303)


def safe_next(url: str | None, default: str = "/inbox") -> str:
    # Only local paths: "next" must not turn sign-in into an open redirect.
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return default


def error_page(request: Request, err: CrmailError, status: int | None = None) -> Response:
    code = status or err.http_status
    headers = {}
    if isinstance(err, RateLimited):
        headers["Retry-After"] = str(err.retry_after)
    if wants_html(request):
        resp: Response = page(request, "error.html", code, error=err, user=None)
    else:
        resp = JSONResponse(err.to_dict(), status_code=code)
    resp.headers.update(headers)
    return resp


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        raw = RAW in self.tags

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as err:
                if raw or request.method != "GET":
                    return error_page(request, err)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return see_other(f"/signin?next={quote(target, safe='')}")
            except CrmailError as err:
                return error_page(request, err)
            except RequestValidationError as exc:
                fields = ", ".join(
                    str(e.get("loc", ("?",))[-1]) for e in exc.errors()
                )  # never echo the input: it may be a password
                return error_page(request, InvalidInput(f"please check: {fields}"))

        return run
