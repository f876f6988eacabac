"""The value objects of calendar storage: what its functions take and return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crmail.domain.ical import ParsedEvent

#: the meeting webhooks (added to storage.events.EVENT_TYPES)
MEETING_EVENTS = ("meeting.created", "meeting.updated", "meeting.cancelled")


@dataclass(frozen=True, slots=True)
class CalendarAccountView:
    id: int
    user_id: int
    #: caldav | google | microsoft
    provider: str
    url: str
    username: str
    preset: str | None
    mail_account_id: int | None
    auto_create: bool
    state: str
    last_error: str | None
    last_sync_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CalendarView:
    id: int
    account_id: int
    url: str
    name: str
    selected: bool
    synced: int
    skipped: dict[str, int]
    last_sync_at: datetime | None


@dataclass(frozen=True, slots=True)
class SyncJob:
    """What the sync loop needs to sync one account (the secret still sealed)."""

    account_id: int
    workspace_id: int
    user_id: int
    url: str
    username: str
    sealed: bytes
    auto_create: bool
    #: "caldav" | "google" | "microsoft" (the calendar of a Gmail or Graph account's grant)
    provider: str = "caldav"
    #: the mail account whose OAuth grant a Google calendar uses
    mail_account_id: int | None = None


@dataclass(frozen=True, slots=True)
class CalendarState:
    id: int
    url: str
    sync_token: str | None
    ctag: str | None
    #: href -> etag of everything remembered from this calendar
    etags: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class AttendeeView:
    email: str
    name: str
    partstat: str
    role: str


@dataclass(frozen=True, slots=True)
class MeetingView:
    id: int
    uid: str
    summary: str
    description: str
    location: str
    organizer_email: str | None
    status: str
    starts_at: datetime
    ends_at: datetime
    all_day: bool
    tzid: str | None
    recurring: bool
    origin: str
    attendees: tuple[AttendeeView, ...]


@dataclass(frozen=True, slots=True)
class MeetingItem:
    meeting: MeetingView
    reason: str


@dataclass(frozen=True, slots=True)
class UpcomingItem:
    meeting: MeetingView
    #: this occurrence's times (a series appears once per instance)
    starts_at: datetime
    ends_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """One calendar object resource as read from the server, parsed (None: unreadable)."""

    href: str
    etag: str | None
    ics: str
    event: ParsedEvent | None


@dataclass(frozen=True, slots=True)
class RoundResult:
    stored: int
    updated: int
    cancelled: int
    skipped: dict[str, int]
