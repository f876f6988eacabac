"""IMAP failures (tagged NO/BAD and their response codes) in crmail's words."""

from __future__ import annotations

import re

from crmail.errors import (
    AppPasswordRequired,
    AuthFailed,
    ConnectFailed,
    CrmailError,
    FolderMissing,
    ProtocolError,
)
from crmail.providers import OAUTH2_REFUSED_HINT
from crmail.providers.imap.arguments import folder_text
from crmail.providers.imap.connection import TaggedResult

_APP_PASSWORD = re.compile(
    r"application[- ]specific|app[- ]password|app[- ]specific|web ?login required|"
    r"please log ?in via your web browser",
    re.IGNORECASE,
)
_MISSING = re.compile(
    r"doesn't exist|does not exist|no such (mailbox|folder)|unknown (mailbox|folder)",
    re.IGNORECASE,
)


def login_error(result: TaggedResult, *, host: str, oauth2: bool = False) -> CrmailError:
    text = result.text
    code = (result.code or "").upper()
    if code == "UNAVAILABLE":
        return ConnectFailed(
            f"{host} cannot log in right now: {text}",
            hint="The mail server is temporarily unavailable; try again later.",
        )
    if oauth2 and result.status == "NO":
        return AuthFailed(
            f"{host} refused the OAuth2 sign-in: {text}",
            hint=OAUTH2_REFUSED_HINT,
        )
    if _APP_PASSWORD.search(text):
        return AppPasswordRequired(
            f"{host} refused the password: {text}",
            hint="Your account uses two-factor authentication: create an app password "
            "at your mail provider and use it instead of your normal password.",
        )
    if code == "WEBALERT":
        return AppPasswordRequired(
            f"{host} requires a web login first: {text}",
            hint="Log in once in your provider's web mail, then create an app password.",
        )
    if code == "PRIVACYREQUIRED":
        return AuthFailed(
            f"{host} refuses to log in without TLS: {text}",
            hint="Use TLS (port 993) or STARTTLS for this server.",
        )
    if result.status == "BAD":
        return ProtocolError(f"{host} rejected the login command: {text}")
    return AuthFailed(
        f"{host} refused the login: {text}",
        hint="Check the user name and password (some providers require an app password).",
    )


def check(result: TaggedResult, what: str, *, folder: str | bytes | None = None) -> None:
    if result.ok:
        return
    code = (result.code or "").upper()
    # Dovecot answers SELECT of a missing mailbox without [NONEXISTENT].
    if folder is not None and (
        code in ("NONEXISTENT", "TRYCREATE") or _MISSING.search(result.text)
    ):
        raise FolderMissing(f"folder {folder_text(folder)!r} does not exist: {result.text}")
    if code == "UNAVAILABLE":
        raise ConnectFailed(f"{what}: server unavailable: {result.text}")
    raise ProtocolError(f"{what} failed ({result.status}): {result.text}")
