"""What reads of mail and CRM records hand out: frozen values, never ORM objects.

Callers (the API, the web app) cannot lazy-load or mutate rows outside the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


class Unset(Enum):
    """Marks a PATCH field the client did not send (distinct from an explicit null)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    workspace_id: int
    email: str
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Address:
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: int
    thread_id: int
    subject: str
    from_: Address | None
    to: tuple[Address, ...]
    date: datetime
    snippet: str
    direction: Literal["inbound", "outbound"]
    attachment_count: int


@dataclass(frozen=True, slots=True)
class TimelineItem:
    message: MessageSummary
    reason: str


@dataclass(frozen=True, slots=True)
class InboxEntry:
    id: int
    message: MessageSummary
    is_read: bool
    state: str
    received_at: datetime
    #: why the user's last change to this message could not be made on the server
    sync_error: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    #: cursor for the next (older) page, None when this one is the last
    next_before: str | None


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: int
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    placeholder_reason: str | None


@dataclass(frozen=True, slots=True)
class PlacementInfo:
    account_id: int
    folder: str
    folder_role: str
    uid: int
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    subject_type: str
    subject_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDetail:
    summary: MessageSummary
    message_id_header: str | None
    participants: dict[str, tuple[Address, ...]]
    text: str | None
    #: unsanitized: the caller must sanitize before showing it to anyone
    html: str | None
    attachments: tuple[AttachmentInfo, ...]
    parse_failed: bool
    defects: tuple[str, ...]
    placements: tuple[PlacementInfo, ...]
    links: tuple[LinkInfo, ...]
    #: mail written in the CRM: queued | sending | sent | failed | unknown, and why
    send_state: str | None = None
    send_error: str | None = None
    #: why the viewer's last change to this message could not be made on the server
    sync_error: str | None = None
