"""Turning what a user typed into IMAP settings, trying them, and explaining failures.

The use-case behind connecting a mailbox, shared by the API (``POST /api/accounts/test``,
``POST /api/accounts``, ``PATCH``/reconnect) and the web app's Settings → Email: both log
in and list folders before anything is stored, so a wrong password is reported while the
user is still on the form, with the provider's advice (app passwords) attached.

The connection forms (:class:`AccountTestIn`, :class:`AccountIn`, :class:`AccountPatch`)
live here, below both shells; :mod:`crmail.api.schemas` re-exports them for the API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from crmail.domain.addresses import normalize_email
from crmail.domain.netpolicy import AddressPolicy
from crmail.domain.presets import PRESETS, Preset
from crmail.errors import (
    AddressNotAllowed,
    AuthFailed,
    ConnectFailed,
    CrmailError,
    Forbidden,
    InvalidInput,
    ProviderError,
    TLSFailed,
)
from crmail.providers.imap import ImapClient, ImapSettings
from crmail.providers.netcheck import POLICY_HINT

log = logging.getLogger(__name__)

EmailText = Annotated[str, Field(min_length=3, max_length=320)]
Security = Literal["tls", "starttls", "none"]


class _In(BaseModel):
    # Unknown fields are an error: a typo ("lead" for "lead_id") should not be ignored.
    model_config = ConfigDict(extra="forbid")


class AccountTestIn(_In):
    provider: str = Field(description="a key of GET /api/providers; 'other' for any server")
    email: EmailText
    username: Annotated[str, Field(max_length=320)] | None = Field(
        None, description="login name; defaults to the email address"
    )
    password: SecretStr
    imap_host: Annotated[str, Field(max_length=255)] | None = None
    imap_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    imap_security: Security | None = None
    ca_file: Annotated[str, Field(max_length=4096)] | None = Field(
        None,
        description=(
            "path, on the crmail server, of a PEM CA bundle to trust for this account's "
            "TLS: for self-signed or private-CA servers (tests, on-premise). Leave empty "
            "for public providers."
        ),
    )


Mode = Literal["two_way", "one_way"]
SyncScope = Literal["contacts", "crm_threads", "folders"]
Folders = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=500)]], Field(max_length=100)
]

_MODE = "two_way: mail syncs both ways; one_way: only mail sent from the CRM reaches the mailbox"
_SCOPE = "contacts: mail with CRM contacts; crm_threads: only threads started in the CRM; folders: all mail in the synced folders"
_FOLDERS = "extra folders to sync besides Inbox/Sent/Archive"
_ARCHIVE = "Done archives the email in the mailbox"
_OUTGOING = "create contacts for new addresses the user writes to"
_INCOMING = "also create contacts from incoming mail (with auto_create_contacts)"
_LARGE = (
    "Microsoft Graph accounts: attachments over 3 MB (up to 150 MB) go through upload "
    "sessions; off: over 3 MB is refused"
)


class AccountIn(AccountTestIn):
    smtp_host: Annotated[str, Field(max_length=255)] | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    smtp_security: Security | None = None
    history_days: Annotated[int, Field(ge=1, le=36500)] | None = Field(
        None, description="how far back the initial import goes; server default when absent"
    )
    folders: Folders = Field(default_factory=list, description=_FOLDERS)
    mode: Mode = Field("two_way", description=_MODE)
    scope: SyncScope = Field("contacts", description=_SCOPE)
    archive_on_done: bool = Field(True, description=_ARCHIVE)
    auto_create_contacts: bool = Field(False, description=_OUTGOING)
    auto_create_incoming: bool = Field(False, description=_INCOMING)
    large_attachments: bool = Field(False, description=_LARGE)

    def options(self) -> dict[str, object]:
        """The sync options chosen on the form (MailAccount.settings keys)."""
        return self.model_dump(include=set(OPTION_NAMES))


class AccountOptionsPatch(_In):
    """How a connected mailbox syncs: only the options given change."""

    mode: Mode | None = Field(None, description=_MODE)
    scope: SyncScope | None = Field(None, description=_SCOPE)
    folders: Folders | None = Field(None, description=_FOLDERS)
    archive_on_done: bool | None = Field(None, description=_ARCHIVE)
    auto_create_contacts: bool | None = Field(None, description=_OUTGOING)
    auto_create_incoming: bool | None = Field(None, description=_INCOMING)
    large_attachments: bool | None = Field(None, description=_LARGE)

    def option_changes(self) -> dict[str, object]:
        return {
            k: v for k, v in self.model_dump(include=set(OPTION_NAMES)).items() if v is not None
        }


OPTION_NAMES = tuple(AccountOptionsPatch.model_fields)


class AccountConnectionPatch(_In):
    """Change a connected mailbox's address, login or servers: only the fields given
    change; the rest is kept.

    The body of ``POST /api/accounts/{id}/reconnect``, where every field may be left
    out to resume with the stored credentials.
    """

    provider: str | None = Field(None, description="a key of GET /api/providers")
    email: EmailText | None = Field(None, description="the new connected address")
    username: Annotated[str, Field(max_length=320)] | None = Field(
        None, description="login name; follows the address when it was the address"
    )
    password: SecretStr | None = Field(None, description="new password or app password")
    imap_host: Annotated[str, Field(max_length=255)] | None = None
    imap_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    imap_security: Security | None = None
    ca_file: Annotated[str, Field(max_length=4096)] | None = None
    smtp_host: Annotated[str, Field(max_length=255)] | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    smtp_security: Security | None = None


class AccountPatch(AccountConnectionPatch, AccountOptionsPatch):
    """Change a connected mailbox: its connection (tested first) and its options; only the
    fields given change, the rest is kept."""

    def connection_changes(self) -> bool:
        return any(getattr(self, name) is not None for name in AccountConnectionPatch.model_fields)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The form filled in with the preset's defaults."""

    preset: Preset
    imap: ImapSettings
    #: what is stored in MailAccount.settings: everything but the password
    stored: dict[str, object]


def resolve(
    body: AccountTestIn, *, default_history_days: int, allow_ca_file: bool = False
) -> Resolved:
    """Validate connection settings. ``ca_file`` names a file on the crmail server: only
    workspace admins may set one (a member could otherwise probe the server's files)."""
    if body.provider not in PRESETS:
        raise InvalidInput(
            f"unknown provider {body.provider!r}",
            hint="use a key of GET /api/providers, or 'other' for any IMAP server",
        )
    p = PRESETS[body.provider]
    host = (body.imap_host or p.imap_host).strip()
    if not host:
        raise InvalidInput("imap_host is required for this provider")
    if body.ca_file is not None and not allow_ca_file:
        raise Forbidden(
            "only a workspace admin can set a CA file",
            hint="ask an admin to connect a server with a private certificate",
        )
    if body.ca_file is not None and not os.path.isfile(body.ca_file):
        raise InvalidInput("ca_file: no such file on the server", hint="give an absolute path")
    port = body.imap_port or p.imap_port
    security = body.imap_security or p.imap_security
    username = body.username or body.email
    imap = ImapSettings(
        host=host,
        port=port,
        security=security,
        username=username,
        password=body.password.get_secret_value(),
        ca_file=body.ca_file,
    )
    stored: dict[str, object] = {
        "imap_host": host,
        "imap_port": port,
        "imap_security": security,
        "username": username,
        "ca_file": body.ca_file,
    }
    if isinstance(body, AccountIn):
        stored.update(
            smtp_host=body.smtp_host or p.smtp_host,
            smtp_port=body.smtp_port or p.smtp_port,
            smtp_security=body.smtp_security or p.smtp_security,
            history_days=body.history_days or default_history_days,
            folders=list(dict.fromkeys(body.folders)),
        )
    return Resolved(p, imap, stored)


def resolve_patch(
    email: str,
    settings: Mapping[str, object],
    password: str,
    body: AccountConnectionPatch,
    *,
    default_history_days: int,
    allow_ca_file: bool = False,
) -> tuple[str, Resolved]:
    """The stored connection with the changes of ``body``: (new address, settings to test).

    ``password`` is the stored one, used when the body brings none. Choosing another
    provider drops the stored server settings, so the new preset's defaults apply.
    """
    new_email = email
    if body.email is not None:
        checked = normalize_email(body.email)
        if checked is None:
            raise InvalidInput(f"{body.email!r} is not a valid email address")
        new_email = checked
    old_preset = str(settings.get("preset") or "other")
    provider = body.provider or old_preset
    same_provider = provider == old_preset
    old_username = str(settings.get("username") or email)
    # A login that was the address itself follows the address; a distinct one stays.
    username = body.username or (old_username if old_username.lower() != email else new_email)

    def pick(name: str) -> object:
        value = getattr(body, name)
        if value is not None:
            return value
        return settings.get(name) if same_provider else None

    data: dict[str, object] = {
        "provider": provider,
        "email": new_email,
        "username": username,
        "password": body.password.get_secret_value() if body.password else password,
        "history_days": settings.get("history_days"),
        "folders": list(_strings(settings.get("folders"))),
    }
    for name in (
        "imap_host",
        "imap_port",
        "imap_security",
        "ca_file",
        "smtp_host",
        "smtp_port",
        "smtp_security",
    ):
        data[name] = pick(name)
    try:
        full = AccountIn.model_validate(data)
    except ValidationError as exc:
        # Field names only: the input would echo the password.
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise InvalidInput(f"please check: {', '.join(bad)}") from None
    # A CA file already stored (set by an admin) may stay; only a new one needs the role.
    allow = allow_ca_file or body.ca_file is None
    return new_email, resolve(full, default_history_days=default_history_days, allow_ca_file=allow)


#: providers reached through their own API with OAuth tokens: no IMAP/SMTP server and
#: no password to change or test (their sign-in is renewed by Connect with ...)
API_PROVIDERS = frozenset({"gmail", "graph"})
_SIGN_IN = {"gmail": "Google", "graph": "Microsoft"}


def is_api_mailbox(provider: str) -> bool:
    return provider in API_PROVIDERS


def api_mailbox_sign_in(provider: str) -> str:
    """Whose sign-in an API mailbox uses ("Google", "Microsoft"); "" for IMAP."""
    return _SIGN_IN.get(provider, "")


def check_api_mailbox_patch(
    provider: str, email: str, settings: Mapping[str, object], body: AccountConnectionPatch
) -> None:
    """An API mailbox keeps its address and sign-in: a patch may repeat them (a form
    sending everything back) but not change them; nothing is probed."""
    label = _SIGN_IN.get(provider, "its provider")
    changed = sorted(
        name
        for name in AccountConnectionPatch.model_fields
        if getattr(body, name) is not None
        and not (name == "email" and normalize_email(str(body.email)) == email)
        and not (name == "provider" and body.provider == settings.get("preset"))
    )
    if changed:
        raise InvalidInput(
            f"this mailbox signs in with {label}: {', '.join(changed)} cannot be changed here",
            hint=(
                f"to renew access or connect another address, use Settings → Email → "
                f"Connect with {label}; options (mode, scope, folders...) can be changed"
            ),
        )


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


async def test_connection(r: Resolved, policy: AddressPolicy) -> list[str]:
    """Log in and list the folders; raises the provider's CrmailError on failure.

    The servers must be where ``policy`` allows (the IMAP server is resolved and checked
    here, the SMTP server's name when mail is sent), else :class:`AddressNotAllowed`
    (422). Any member may call this with any host and port: so that it does not map the
    network for them, every failure to reach the server is one and the same answer,
    whether the port was closed, filtered, or the name unknown.
    """
    smtp_host = str(r.stored.get("smtp_host") or "")
    if smtp_host and policy.refuses_host(smtp_host):
        raise AddressNotAllowed(
            f"the SMTP server {smtp_host} is a loopback, private or reserved address",
            hint=POLICY_HINT,
        )
    settings = replace(r.imap, address_policy=policy)
    try:
        client = await ImapClient.connect(settings)
    except ConnectFailed as err:
        if isinstance(err, TLSFailed):
            raise
        log.info("connection test to %s:%s failed: %s", settings.host, settings.port, err)
        raise ConnectFailed(
            f"could not connect to {settings.host}:{settings.port}",
            hint="Check the server name, port and security (TLS/STARTTLS) setting, "
            "and that the server is up.",
        ) from None
    try:
        folders = await client.list_folders()
    finally:
        await client.logout()
    return [f.name for f in folders]


def explain(err: ProviderError, preset: Preset) -> ProviderError:
    """Attach the advice a user needs to fix the settings they just typed."""
    if isinstance(err, AuthFailed):
        # Most refused passwords on big providers are 2FA accounts needing an app password.
        err.hint = _join(err.hint, preset.app_password_hint)
    elif isinstance(err, TLSFailed):
        err.hint = _join(
            err.hint,
            "For a server with a self-signed or private certificate, give ca_file.",
        )
    elif isinstance(err, ConnectFailed) and not err.hint:
        err.hint = "Check the server name, port and security (TLS/STARTTLS) setting."
    return err


def status_for(err: CrmailError) -> int:
    """HTTP status when the failure is about the settings the client just sent.

    The errors' own status (502, "the mail server failed us") suits background sync;
    while a user is filling in the form, refused credentials are a problem with the
    request, so they answer 422 and the client can show it next to the password field.
    """
    if isinstance(err, AuthFailed):
        return 422
    return err.http_status


def _join(first: str | None, second: str) -> str:
    if not first or first == second:
        return second
    return f"{first} {second}"
