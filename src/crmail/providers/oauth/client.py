"""The OAuth 2.0 authorization-code flow (PKCE S256) and token refresh, through Authlib.

Authlib does the protocol; this module chooses its parameters and turns what can go
wrong (Authlib's OAuthError, httpx's transport and status errors) into crmail's errors.
No token is ever put into an error message or a log line.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jws
from joserfc.errors import JoseError

with warnings.catch_warnings():
    # Authlib >= 1.9 would rather use httpx2; httpx, crmail's HTTP client, still works.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from crmail.errors import AuthFailed, ConnectFailed, CrmailError, ProtocolError, ProviderError
from crmail.providers import OAUTH2_REFUSED_HINT
from crmail.providers.oauth.registry import MICROSOFT, OAuthProvider

#: seconds an access token is assumed to live when the provider does not say
DEFAULT_LIFETIME = 3600


class GrantRevoked(AuthFailed):
    """The refresh token is no longer good (revoked, expired, password changed)."""

    code = "auth_failed"
    #: the stored tokens' version that was refused (set by the TokenKeeper): a refusal
    #: is recorded only if the owner has not reconnected meanwhile
    version: bytes | None = None


class SignInRefused(AuthFailed):
    """The provider (or the user) refused at the authorize step."""

    code = "oauth_refused"
    http_status = 403


class AdminConsentRequired(SignInRefused):
    code = "admin_consent_required"


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """Where to send the user's browser, and what the callback needs to finish."""

    url: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token endpoint gave: refresh_token None when it did not send a new one."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    #: epoch seconds
    expires_at: float
    #: the mailbox the user signed in as (from the id_token), on a code exchange
    email: str | None = None


class OAuthClient:
    def __init__(self, provider: OAuthProvider, *, timeout: float = 20.0) -> None:
        self.provider = provider
        self.timeout = timeout

    def _client(self) -> AsyncOAuth2Client:
        p = self.provider
        return AsyncOAuth2Client(
            client_id=p.client_id,
            client_secret=p.client_secret,
            scope=p.scope,
            redirect_uri=p.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
            timeout=self.timeout,
        )

    def authorization(self) -> PendingAuthorization:
        """A new authorization request: fresh ``state`` and PKCE verifier."""
        state = generate_token(43)
        verifier = generate_token(64)
        client = self._client()
        url, _ = client.create_authorization_url(
            self.provider.authorize_url,
            state=state,
            code_verifier=verifier,
            **dict(self.provider.authorize_params),
        )
        return PendingAuthorization(url, state, verifier)

    async def exchange(self, code: str, code_verifier: str) -> Grant:
        """The callback's code for tokens; the id_token names the mailbox."""
        async with self._client() as client, _translated(self.provider, exchange=True):
            token = await client.fetch_token(
                self.provider.token_url, code=code, code_verifier=code_verifier
            )
        grant = _grant(token)
        if not grant.refresh_token:
            raise ProtocolError(
                f"{self.provider.label} gave no refresh token",
                hint="try again; crmail asks for offline access and consent every time",
            )
        email = _email_of(token.get("id_token"), self.provider)
        return Grant(grant.access_token, grant.refresh_token, grant.expires_at, email)

    async def refresh(self, refresh_token: str) -> Grant:
        """A new access token (and, with Microsoft, a new refresh token)."""
        async with self._client() as client, _translated(self.provider, exchange=False):
            token = await client.refresh_token(self.provider.token_url, refresh_token=refresh_token)
        grant = _grant(token)
        # Authlib keeps the old refresh token when none came back: only a new one counts.
        new = grant.refresh_token if grant.refresh_token != refresh_token else None
        return Grant(grant.access_token, new, grant.expires_at)

    async def revoke(self, token: str) -> None:
        """Tell the provider to forget a grant (where it offers revocation)."""
        if self.provider.revoke_url is None:
            return
        async with self._client() as client, _translated(self.provider, exchange=False):
            await client.revoke_token(self.provider.revoke_url, token=token)


def _grant(token: dict[str, Any]) -> Grant:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProtocolError("the token endpoint answered without an access token")
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int | float):
        expires_in = token.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float | str) else 0
        expires_at = time.time() + (lifetime or DEFAULT_LIFETIME)
    refresh = token.get("refresh_token")
    return Grant(access, refresh if isinstance(refresh, str) and refresh else None, expires_at)


def _email_of(id_token: object, provider: OAuthProvider) -> str | None:
    """The mailbox address in the id_token.

    The id_token came straight from the token endpoint over TLS, which OpenID Connect
    Core (3.1.3.7) accepts in place of checking its signature; its audience must still
    be our client.
    """
    if not isinstance(id_token, str):
        return None
    try:
        claims = json.loads(jws.extract_compact(id_token.encode()).payload)
    except (JoseError, ValueError) as exc:
        raise ProtocolError(f"{provider.label} sent an id_token crmail cannot read") from exc
    if not isinstance(claims, dict):
        raise ProtocolError(f"{provider.label} sent an id_token crmail cannot read")
    aud = claims.get("aud")
    if aud != provider.client_id and not (isinstance(aud, list) and provider.client_id in aud):
        raise ProtocolError(f"{provider.label}'s id_token was issued to another application")
    # Microsoft leaves "email" out for some accounts; preferred_username is the sign-in name.
    for claim in ("email", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value.strip().lower()
    return None


class _translated:
    """Authlib's and httpx's errors as crmail's, without a token in any message."""

    def __init__(self, provider: OAuthProvider, *, exchange: bool) -> None:
        self.provider = provider
        self.exchange = exchange

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, CrmailError) or not isinstance(exc, Exception):
            return
        raise self._translate(exc) from None

    def _translate(self, exc: Exception) -> CrmailError:
        label = self.provider.label
        if isinstance(exc, OAuthError):
            error = str(exc.error or "oauth_error")
            if error == "invalid_grant":
                if self.exchange:
                    return SignInRefused(
                        f"{label} did not accept the sign-in (it expired or was already used)",
                        hint="start Connect again",
                    )
                return GrantRevoked(
                    f"{label} no longer accepts crmail's access to this mailbox "
                    "(revoked, expired or the password changed)",
                    hint=OAUTH2_REFUSED_HINT,
                )
            if error in ("temporarily_unavailable", "server_error", "slow_down"):
                return ProviderError(f"{label}'s sign-in service is busy ({error}); retrying")
            failed = ProviderError(
                f"{label} refused crmail's OAuth client ({error})",
                hint="an administrator should check the client id, secret and redirect URI",
            )
            failed.retryable = False
            return failed
        if isinstance(exc, httpx.HTTPStatusError):
            return ProviderError(
                f"{label}'s sign-in service answered HTTP {exc.response.status_code}; retrying"
            )
        if isinstance(exc, httpx.TransportError):
            return ConnectFailed(f"{label}'s sign-in service could not be reached")
        if isinstance(exc, ValueError):
            return ProtocolError(f"{label}'s sign-in service answered something unexpected")
        return ProviderError(f"{label} sign-in failed: {type(exc).__name__}")


#: Microsoft's codes for "this tenant needs an administrator's consent first"
_ADMIN_CONSENT_CODES = ("AADSTS65001", "AADSTS90094", "AADSTS90095", "AADSTS65004")


def authorize_error(provider: OAuthProvider, error: str, description: str) -> SignInRefused:
    """What the provider's error at the authorize step means for the user, in words."""
    label = provider.label
    desc = description or ""
    if provider.key == MICROSOFT and (
        any(c in desc for c in _ADMIN_CONSENT_CODES) or error == "consent_required"
    ):
        return AdminConsentRequired(
            "Your organization requires an administrator to approve crmail before you can "
            "connect your mailbox.",
            hint="ask your Microsoft 365 administrator to grant admin consent to the crmail "
            "app (docs/providers/microsoft.md), then connect again",
        )
    if error == "access_denied":
        return SignInRefused(
            f"The sign-in at {label} was cancelled or access was not granted; nothing was "
            "connected.",
            hint=f"Connect with {label} again and allow the access crmail asks for",
        )
    if error == "admin_policy_enforced" or error == "org_internal":
        return AdminConsentRequired(
            f"Your {label} administrator does not allow crmail to access mailboxes.",
            hint="ask your administrator to allow the crmail app",
        )
    return SignInRefused(
        f"{label} refused the sign-in ({error[:60]})",
        hint=f"try again; if it persists, show this to your administrator: {desc[:200]}",
    )
