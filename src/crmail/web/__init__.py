"""The web app: server-rendered pages over the same storage functions as the API.

Mounted by :func:`install`; pages work without JavaScript (a few lines of it prefill
server settings, keep the time zone for Snooze and refresh the sync status).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from crmail.web import auth, calendar, crm, mail, oauth, security, settings
from crmail.web.ratelimit import SignInLimiter

router = APIRouter()
for _module in (auth, mail, crm, settings, oauth, security, calendar):
    router.include_router(_module.router)


def install(app: FastAPI) -> None:
    """Add the web pages and their static files to the API app."""
    app.state.web_signin_limiter = SignInLimiter()
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")


__all__ = ["install", "router"]
