"""Connect with Google / Microsoft: the use-cases the web app and the API share, and the
database-backed token store the sync worker refreshes access tokens through.

A sign-in is bound to the user who started it (and, started from the web app, to that
web session): the callback must come back in a browser signed in as that user, so a
link to someone else's consent screen cannot attach their mailbox to another crmail
user, nor a stranger's callback attach a mailbox to yours.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crmail.crypto import SecretBox
from crmail.domain.addresses import normalize_email
from crmail.domain.presets import preset
from crmail.errors import Forbidden, InvalidInput, ProtocolError
from crmail.providers.oauth import (
    Grant,
    OAuthClient,
    StoredTokens,
    TokenKeeper,
    authorize_error,
    provider_for,
)
from crmail.storage import accounts, crm
from crmail.storage import oauth as store
from crmail.storage.crm import UserInfo
from crmail.storage.db import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crmail.config import Settings
    from crmail.services import Services

#: the keys of an OAuth account's sealed secrets
REFRESH, ACCESS, EXPIRES = "oauth2_refresh_token", "oauth2_token", "oauth2_expires_at"


def seal_grant(box: SecretBox, grant: Grant, refresh_token: str) -> bytes:
    return box.seal(
        {REFRESH: refresh_token, ACCESS: grant.access_token, EXPIRES: repr(grant.expires_at)}
    )


class DatabaseTokenStore:
    """The tokens of an account, sealed in ``mail_accounts.secret``."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def load(self, account_id: int) -> StoredTokens:
        row = await self.db.read(lambda s: store.oauth_account(s, account_id))
        opened = self.box.open(row.secret)
        refresh = opened.get(REFRESH)
        if not refresh:
            raise ProtocolError(f"mail account {account_id} has no stored refresh token")
        try:
            expires = float(opened.get(EXPIRES) or 0)
        except ValueError:
            expires = 0.0
        return StoredTokens(row.provider, refresh, opened.get(ACCESS), expires, row.secret)

    async def replace(self, account_id: int, version: bytes, grant: Grant) -> bytes | None:
        old = self.box.open(version)
        new = seal_grant(self.box, grant, grant.refresh_token or old[REFRESH])
        stored = await self.db.write(lambda s: store.replace_secret(s, account_id, version, new))
        return new if stored else None


def token_keeper(settings: Settings, db: Database, box: SecretBox) -> TokenKeeper:
    return TokenKeeper(
        DatabaseTokenStore(db, box), lambda key: OAuthClient(provider_for(settings, key))
    )


def uses_gmail_api(settings: Settings) -> bool:
    """Whether "Connect with Google" creates a Gmail API account (CRMAIL_GOOGLE_MAIL_API)."""
    return settings.google_mail_api != "imap"


def uses_graph(settings: Settings) -> bool:
    """Whether "Connect with Microsoft" creates a Microsoft Graph account
    (CRMAIL_MICROSOFT_MAIL_API)."""
    return settings.microsoft_mail_api != "imap"


def _account_kind(settings: Settings, provider_key: str) -> str:
    if provider_key == "google" and uses_gmail_api(settings):
        return "gmail"
    if provider_key == "microsoft" and uses_graph(settings):
        return "graph"
    return "imap"


# --- connecting ------------------------------------------------------------------------


async def start_sign_in(
    services: Services, user: UserInfo, provider_key: str, *, session_token: str | None
) -> str:
    """A new authorization request for ``user``: the URL to send the browser to."""
    provider = provider_for(services.settings, provider_key)
    pending = OAuthClient(provider).authorization()
    session_hash = store.digest(session_token) if session_token else None
    await services.db.write(
        lambda s: store.save_state(
            s,
            state=pending.state,
            user_id=user.id,
            session_hash=session_hash,
            provider=provider.key,
            code_verifier=pending.code_verifier,
        )
    )
    return pending.url


@dataclass(frozen=True, slots=True)
class Connected:
    account_id: int
    email: str
    #: an account of this address existed: it was reconnected, nothing re-imported
    reconnected: bool


async def finish_sign_in(
    services: Services,
    user: UserInfo,
    provider_key: str,
    *,
    session_token: str,
    state: str,
    code: str,
    error: str = "",
    error_description: str = "",
) -> Connected:
    """The provider's callback: check ``state``, trade the code, create or reconnect."""
    provider = provider_for(services.settings, provider_key)
    pending = await services.db.write(lambda s: store.take_state(s, state)) if state else None
    if pending is None:
        raise Forbidden(
            "this sign-in is not valid any more (expired, already used, or not started here)",
            hint=f"start Connect with {provider.label} again from Settings → Email",
        )
    same_session = pending.session_hash is None or hmac.compare_digest(
        pending.session_hash, store.digest(session_token)
    )
    if pending.user_id != user.id or pending.provider != provider.key or not same_session:
        raise Forbidden(
            "this sign-in was started by another session",
            hint=f"start Connect with {provider.label} again from Settings → Email",
        )
    if error:
        raise authorize_error(provider, error, error_description)
    if not code:
        raise InvalidInput(f"{provider.label} sent no authorization code")
    grant = await OAuthClient(provider).exchange(code, pending.code_verifier)
    email = normalize_email(grant.email or "")
    if email is None:
        raise ProtocolError(f"{provider.label} did not say which mailbox was signed in")
    assert grant.refresh_token is not None  # exchange() insists on one
    secret = seal_grant(services.box, grant, grant.refresh_token)
    p = preset(provider.preset)
    # Google's mail goes through the Gmail API, Microsoft's through Graph, unless the
    # operator chose IMAP + SMTP.
    kind = _account_kind(services.settings, provider.key)
    stored: dict[str, object] = {
        "preset": p.key,
        "imap_host": p.imap_host,
        "imap_port": p.imap_port,
        "imap_security": p.imap_security,
        "username": email,
        "smtp_host": p.smtp_host,
        "smtp_port": p.smtp_port,
        "smtp_security": p.smtp_security,
        "oauth_provider": provider.key,
        # A new grant restarts the worker; a refreshed access token does not.
        "oauth_grant": secrets.token_hex(8),
    }

    def save(s: Session) -> Connected:
        existing = crm.find_account(s, user.id, email)
        if existing is not None:
            # Keeps the account's own server settings (a test or a relay may differ
            # from the preset): only the login changes, so sync resumes where it was.
            current = accounts.connection(s, user, existing).settings
            keep = {k: v for k, v in stored.items() if k.startswith("oauth_")}
            if current.get("preset") != p.key:
                keep = stored
            accounts.reconnect(s, user, existing, settings=keep, secret=secret, email=email)
            return Connected(existing, email, True)
        fresh = {**stored, "history_days": services.settings.history_days}
        if kind != "imap":
            fresh = {k: v for k, v in fresh.items() if not k.startswith(("imap_", "smtp_"))}
        view = crm.add_account(s, user, email=email, settings=fresh, secret=secret, provider=kind)
        return Connected(view.id, email, False)

    connected = await services.db.write(save)
    services.sync.accounts_changed()
    return connected
