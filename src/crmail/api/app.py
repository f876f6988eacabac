"""The FastAPI application: routes, and one error shape for every failure.

Every error leaves as ``{"error": {"code", "message", "hint"?}}``: crmail's own errors
with their status, FastAPI's validation and HTTP errors translated into it, and anything
unexpected as a bare 500 (the details go to the log, never to the client).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from crmail import web
from crmail.api.routes import (
    accounts,
    actions,
    calendar,
    crm,
    health,
    links,
    mail,
    me,
    metrics,
    oauth,
    push,
    sending,
    users,
    webhooks,
)
from crmail.api.schemas import ErrorOut
from crmail.errors import CrmailError, RateLimited
from crmail.services import Services

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="crmail",
        version="0.1.0",
        description="Mail synced from users' own mailboxes, on CRM timelines and Inboxes.",
        responses={"default": {"model": ErrorOut, "description": "any error"}},
    )
    app.state.services = services
    for module in (
        health,
        metrics,
        me,
        users,
        crm,
        accounts,
        oauth,
        mail,
        actions,
        sending,
        links,
        webhooks,
        push,
        calendar,
    ):
        app.include_router(module.router)
    web.install(app)  # the server-rendered web app and its static files
    if services.settings.trusted_proxies:
        # The client address (sign-in limits) and scheme as the proxy saw them; from
        # these proxies only, so nobody else can pick the address counted.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(n) for n in services.settings.trusted_proxies],
        )
    app.add_exception_handler(CrmailError, _crmail_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def error_response(err: CrmailError, status: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if isinstance(err, RateLimited) else None
    return JSONResponse(err.to_dict(), status_code=status or err.http_status, headers=headers)


async def _crmail_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrmailError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only locations and messages: pydantic's "input" may echo what was sent, and on
    # the account routes that includes the mailbox password.
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg")))
    body = {"code": "invalid_input", "message": "; ".join(problems) or "invalid request"}
    return JSONResponse({"error": body}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal server error"}},
        status_code=500,
    )
