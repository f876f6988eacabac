"""Request and response bodies of the JSON API (pydantic v2).

Responses are built from the frozen dataclasses of :mod:`crmail.storage.crm` with
``from_attributes``; requests are validated here for shape only (types, lengths, enums):
rules that need the database (uniqueness, ids of the workspace) are checked in storage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# The connection forms belong to the use-case shared with the web app; re-exported here.
from crmail.sync.connect import (
    AccountConnectionPatch,
    AccountIn,
    AccountPatch,
    AccountTestIn,
    Mode,
    SyncScope,
)

__all__ = ["AccountConnectionPatch", "AccountIn", "AccountPatch", "AccountTestIn"]

#: the largest id the database stores (64-bit): a bigger one is invalid input, not a crash
MAX_ID = 2**63 - 1
#: an id in a body
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


#: an id in the URL: out of range is a 422, like any malformed input
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(max_length=300)]
EmailText = Annotated[str, Field(min_length=3, max_length=320)]
DealStatus = Literal["open", "won", "lost"]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    # Unknown fields are an error: a typo ("lead" for "lead_id") should not be ignored.
    model_config = ConfigDict(extra="forbid")


# --- errors (documentation only: every error is rendered by the app's handlers) ---------


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


# --- me ---------------------------------------------------------------------------------


class UserOut(Out):
    id: int
    workspace_id: int
    email: str
    name: str
    role: str


# --- contacts, leads, deals ---------------------------------------------------------------


class ContactIn(In):
    name: Name = ""
    emails: Annotated[list[EmailText], Field(max_length=50)] = []
    lead_id: Id | None = None


class ContactPatch(In):
    name: Name | None = None
    emails: Annotated[list[EmailText], Field(max_length=50)] | None = None
    lead_id: Id | None = None


class ContactOut(Out):
    id: int
    name: str
    emails: list[str]
    lead_id: int | None
    created_at: datetime


class LeadIn(In):
    name: Annotated[str, Field(min_length=1, max_length=300)]


class LeadPatch(In):
    name: Annotated[str, Field(min_length=1, max_length=300)] | None = None


class LeadOut(Out):
    id: int
    name: str
    contact_ids: list[int]
    created_at: datetime


class DealIn(In):
    title: Annotated[str, Field(min_length=1, max_length=300)]
    status: DealStatus = "open"
    lead_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=500)] = []
    value_cents: Annotated[int, Field(ge=0, le=MAX_ID)] | None = None


class DealPatch(In):
    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    status: DealStatus | None = None
    lead_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=500)] | None = None
    value_cents: Annotated[int, Field(ge=0, le=MAX_ID)] | None = None


class DealOut(Out):
    id: int
    title: str
    status: str
    lead_id: int | None
    contact_ids: list[int]
    value_cents: int | None
    created_at: datetime


# --- messages ---------------------------------------------------------------------------------


class AddressOut(Out):
    email: str
    name: str


class MessageSummaryOut(Out):
    id: int
    thread_id: int
    subject: str
    from_: AddressOut | None = Field(serialization_alias="from")
    to: list[AddressOut]
    date: datetime
    snippet: str
    direction: Literal["inbound", "outbound"]
    attachment_count: int


class TimelineItemOut(Out):
    message: MessageSummaryOut
    reason: str


class TimelineOut(Out):
    items: list[TimelineItemOut]
    next_before: str | None = Field(
        description="pass as ?before= to get the next, older page; null on the last page"
    )


class InboxEntryOut(Out):
    id: int
    message: MessageSummaryOut
    is_read: bool
    state: str
    received_at: datetime
    sync_error: str | None = Field(
        default=None,
        description="why your last change to this email could not be made in your mailbox",
    )


class InboxOut(BaseModel):
    user_id: int
    #: False when viewing a teammate's Inbox: it can be read, not handled
    actionable: bool
    items: list[InboxEntryOut]
    next_before: str | None


class AttachmentOut(Out):
    id: int
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    placeholder_reason: str | None


class PlacementOut(Out):
    account_id: int
    folder: str
    folder_role: str
    uid: int
    flags: list[str]


class LinkOut(Out):
    subject_type: str
    subject_id: int
    reason: str


class MessageOut(BaseModel):
    id: int
    thread_id: int
    message_id: str | None = Field(description="the Message-ID header")
    subject: str
    date: datetime
    direction: Literal["inbound", "outbound"]
    participants: dict[str, list[AddressOut]]
    text: str | None
    html: str | None = Field(description="sanitized: scripts, handlers and remote images removed")
    attachments: list[AttachmentOut]
    parse_failed: bool
    defects: list[str]
    placements: list[PlacementOut] = Field(description="copies in your own mail accounts only")
    links: list[LinkOut]
    send_state: str | None = Field(
        default=None,
        description="mail written in the CRM: queued, sending, sent, failed or unknown",
    )
    send_error: str | None = Field(default=None, description="why sending failed, if it did")
    sync_error: str | None = Field(
        default=None,
        description="why your last change to this email (Done, read, delete, move) could "
        "not be made in your mailbox; the CRM then shows what the mailbox holds",
    )


# --- mail accounts -------------------------------------------------------------------------


class ProviderOut(Out):
    key: str
    label: str
    imap_host: str
    imap_port: int
    imap_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    app_password_hint: str
    oauth: str | None


class AccountTestOut(BaseModel):
    ok: bool
    folders: list[str]


class AccountOut(Out):
    """A connected mailbox with every setting the web app shows (never its password)."""

    #: settings copied from MailAccount.settings as they are
    CONNECTION_FIELDS: ClassVar[tuple[str, ...]] = (
        "imap_host",
        "imap_port",
        "imap_security",
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "ca_file",
    )

    id: int
    user_id: int
    email: str = Field(description="the connected address: CRM email goes out from it")
    provider: str = Field(description="the protocol: imap")
    preset: str = Field("other", description="the provider preset: a key of GET /api/providers")
    username: str = Field("", description="the login name")
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    ca_file: str | None = None
    mode: Mode = "two_way"
    scope: SyncScope = "contacts"
    folders: list[str] = Field(default_factory=list)
    archive_on_done: bool = True
    auto_create_contacts: bool = False
    auto_create_incoming: bool = False
    large_attachments: bool = False
    settings: dict[str, object] = Field(description="everything stored, as stored")
    state: str
    last_error: str | None
    last_error_code: str | None
    last_sync_at: datetime | None
    created_at: datetime
    drop_address: str | None = Field(
        None,
        description=(
            "read-only: Bcc or forward mail to this address to put it in the CRM (shown "
            "to the account's owner when the server has a drop domain)"
        ),
    )


class BlocklistIn(In):
    entries: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=320)]], Field(max_length=1000)
    ] = Field(description="addresses (boss@partner.test) and whole domains (@competitor.test)")


class BlocklistOut(BaseModel):
    entries: list[str] = Field(
        description="addresses and @domains never auto-created as contacts, in any account"
    )


class FolderStatusOut(BaseModel):
    name: str
    role: str
    done: int
    total: int
    percent: float
    import_complete: bool
    synced: int
    skipped: dict[str, int]
    last_sync_at: datetime | None


class AccountStatusOut(BaseModel):
    id: int
    email: str
    state: str
    last_error: str | None
    last_error_code: str | None
    hint: str | None
    synced: int
    skipped: dict[str, int]
    lag_seconds: float | None
    last_sync_at: datetime | None
    folders: list[FolderStatusOut]
