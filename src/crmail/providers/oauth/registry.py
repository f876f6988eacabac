"""Which OAuth providers exist, what they need, and which the operator configured.

One provider-neutral description per identity platform: its endpoints, the scopes of
each way of reaching the mailbox, the extra authorize parameters that make it hand out
a refresh token, and the mail preset an account created through it gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from crmail.errors import InvalidInput, NotFound

GOOGLE = "google"
MICROSOFT = "microsoft"

#: IMAP and SMTP over XOAUTH2 need Google's full mail scope: gmail.modify does not
#: open IMAP/SMTP
GOOGLE_SCOPES = ("openid", "email", "https://mail.google.com/")
#: the Gmail API provider needs only gmail.modify: read, label, trash, send (no
#: permanent delete); calendar.events: the events of the user's calendars (meetings
#: both ways), not their settings or list
GOOGLE_API_SCOPES = (
    "openid",
    "email",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/calendar.events",
)
#: the Outlook resource's IMAP/SMTP scopes (CRMAIL_MICROSOFT_MAIL_API=imap): one token
#: audience (outlook.office.com) for both
MICROSOFT_SCOPES = (
    "openid",
    "email",
    "offline_access",
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
)
#: Microsoft Graph's delegated scopes (the default): a token can serve one resource only,
#: so Graph mode asks these instead of the IMAP/SMTP ones; openid/email name the mailbox
MICROSOFT_GRAPH_SCOPES = (
    "openid",
    "email",
    "offline_access",
    "User.Read",
    "Mail.ReadWrite",
    "Mail.Send",
    # meetings both ways in the user's calendars (docs/sync.md, "Calendar")
    "Calendars.ReadWrite",
)


class OAuthConfig(Protocol):
    """The operator's OAuth settings (:class:`crmail.config.Settings` has them)."""

    @property
    def public_url(self) -> str: ...
    @property
    def google_client_id(self) -> str: ...
    @property
    def google_client_secret(self) -> str: ...
    @property
    def google_auth_base(self) -> str: ...
    @property
    def google_mail_api(self) -> str: ...
    @property
    def microsoft_client_id(self) -> str: ...
    @property
    def microsoft_client_secret(self) -> str: ...
    @property
    def microsoft_tenant(self) -> str: ...
    @property
    def microsoft_auth_base(self) -> str: ...
    @property
    def microsoft_mail_api(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    key: str  # "google" | "microsoft"
    label: str  # "Google", shown on the button "Connect with Google"
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str
    token_url: str
    #: RFC 7009 revocation, where the provider has one (Microsoft has none)
    revoke_url: str | None
    scopes: tuple[str, ...]
    #: what makes the provider hand out a refresh token
    authorize_params: tuple[tuple[str, str], ...]
    #: the mail server preset an account connected this way gets (domain.presets)
    preset: str
    redirect_uri: str

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


def _google(s: OAuthConfig) -> OAuthProvider | None:
    if not (s.google_client_id and s.google_client_secret and s.public_url):
        return None
    base = s.google_auth_base
    return OAuthProvider(
        key=GOOGLE,
        label="Google",
        client_id=s.google_client_id,
        client_secret=s.google_client_secret,
        authorize_url=f"{base}/o/oauth2/v2/auth"
        if base
        else "https://accounts.google.com/o/oauth2/v2/auth",
        token_url=f"{base}/token" if base else "https://oauth2.googleapis.com/token",
        revoke_url=f"{base}/revoke" if base else "https://oauth2.googleapis.com/revoke",
        scopes=GOOGLE_SCOPES if s.google_mail_api == "imap" else GOOGLE_API_SCOPES,
        # offline: a refresh token; consent: Google sends one again on a reconnect
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        preset="gmail",
        redirect_uri=f"{s.public_url}/oauth/{GOOGLE}/callback",
    )


def _microsoft(s: OAuthConfig) -> OAuthProvider | None:
    if not (s.microsoft_client_id and s.microsoft_client_secret and s.public_url):
        return None
    base = (s.microsoft_auth_base or "https://login.microsoftonline.com") + "/" + s.microsoft_tenant
    return OAuthProvider(
        key=MICROSOFT,
        label="Microsoft",
        client_id=s.microsoft_client_id,
        client_secret=s.microsoft_client_secret,
        authorize_url=f"{base}/oauth2/v2.0/authorize",
        token_url=f"{base}/oauth2/v2.0/token",
        revoke_url=None,
        scopes=MICROSOFT_SCOPES if s.microsoft_mail_api == "imap" else MICROSOFT_GRAPH_SCOPES,
        # offline_access (a scope) gives the refresh token; the account picker lets a
        # user with several Microsoft accounts choose the mailbox
        authorize_params=(("prompt", "select_account"),),
        preset="microsoft365",
        redirect_uri=f"{s.public_url}/oauth/{MICROSOFT}/callback",
    )


_BUILDERS = {GOOGLE: _google, MICROSOFT: _microsoft}
_LABELS = {GOOGLE: "Google", MICROSOFT: "Microsoft"}


def configured_providers(s: OAuthConfig) -> list[OAuthProvider]:
    return [p for build in _BUILDERS.values() if (p := build(s)) is not None]


def provider_for(s: OAuthConfig, key: str) -> OAuthProvider:
    """The configured provider ``key``, or a clear error naming what is missing."""
    build = _BUILDERS.get(key)
    if build is None:
        raise NotFound(f"no OAuth provider {key!r}", hint="use google or microsoft")
    provider = build(s)
    if provider is None:
        raise InvalidInput(
            f"Connect with {_LABELS[key]} is not set up on this server",
            hint=missing_setup(s, key),
        )
    return provider


def missing_setup(s: OAuthConfig, key: str) -> str:
    """What the operator still has to configure for ``key`` (empty when nothing)."""
    prefix = f"CRMAIL_{key.upper()}"
    names = []
    if not getattr(s, f"{key}_client_id"):
        names.append(f"{prefix}_CLIENT_ID")
    if not getattr(s, f"{key}_client_secret"):
        names.append(f"{prefix}_CLIENT_SECRET")
    if not s.public_url:
        names.append("CRMAIL_PUBLIC_URL")
    if not names:
        return ""
    return f"an administrator has to set {', '.join(names)} (see docs/providers/{key}.md)"
