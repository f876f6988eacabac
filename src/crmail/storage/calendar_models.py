"""The calendar side of the schema (CalDAV sync), on the same ``Base`` as the mail tables.

Like a message, an event is stored once per workspace (``events``, keyed by its iCalendar
UID and RECURRENCE-ID); where it lives in a user's calendar is an ``event_placement``
(calendar, href, etag); its instances inside the sync window are ``event_occurrences``.
Meetings reach contact, lead and deal timelines through ``event_links``, a table parallel
to ``timeline_entries``: that one is keyed by a message (its date, its visibility rule),
and keeping events out of it leaves every mail timeline read a single index walk; the
meeting timeline is the same shape, ordered by the meeting's start.

Imported at the end of :mod:`crmail.storage.models`, so ``Base.metadata`` knows them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from crmail.storage.models import Base, Id, fk, pk, utcnow


class CalendarAccount(Base):
    """A user's CalDAV login: the server URL (or a collection URL) and sealed credentials."""

    __tablename__ = "calendar_accounts"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    user_id: Mapped[int] = fk("users.id")
    #: the mail account whose server offers this calendar, if it was connected with one
    mail_account_id: Mapped[int | None] = fk("mail_accounts.id", nullable=True, ondelete="SET NULL")
    provider: Mapped[str] = mapped_column(String(20), default="caldav")
    preset: Mapped[str | None] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(String(2000))
    username: Mapped[str] = mapped_column(String(320))
    #: SecretBox-sealed JSON: {"password": ...}
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    #: attendees of new meetings become contacts (same blocklist and exclusions as mail)
    auto_create: Mapped[bool] = mapped_column(Boolean, default=False)
    #: active | error | disconnected
    state: Mapped[str] = mapped_column(String(20), default="active")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_code: Mapped[str | None] = mapped_column(String(40))
    last_sync_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalendarRow(Base):
    """One calendar collection of an account and its change token."""

    __tablename__ = "calendars"
    id: Mapped[int] = pk()
    account_id: Mapped[int] = fk("calendar_accounts.id")
    url: Mapped[str] = mapped_column(String(2000))
    name: Mapped[str] = mapped_column(String(300), default="")
    selected: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the change token (RFC 6578 sync token, Google syncToken, Graph deltaLink: text of
    #: any length); None: the next round lists the whole collection
    sync_token: Mapped[str | None] = mapped_column(Text)
    #: getctag, for servers without sync-collection
    ctag: Mapped[str | None] = mapped_column(String(500))
    synced: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    last_sync_at: Mapped[datetime | None]
    __table_args__ = (UniqueConstraint("account_id", "url"),)


class CalendarEvent(Base):
    """A meeting, once per workspace; a recurring series is one row with its occurrences."""

    __tablename__ = "events"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    uid: Mapped[str] = mapped_column(String(500))
    #: "" for a whole event or series; an instance's id when only the instance is known
    recurrence_id: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(Text, default="")
    organizer_email: Mapped[str | None] = mapped_column(String(320))
    organizer_name: Mapped[str] = mapped_column(String(300), default="")
    #: confirmed | tentative | cancelled (also: deleted in every calendar)
    status: Mapped[str] = mapped_column(String(12), default="confirmed")
    #: the first start in the window (UTC) and its end; the ordering key of timelines
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the TZID of DTSTART as written (None: UTC or floating)
    tzid: Mapped[str | None] = mapped_column(String(100))
    rrule: Mapped[str | None] = mapped_column(Text)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    #: "sync" (found in a calendar) or "crm" (scheduled from the CRM)
    origin: Mapped[str] = mapped_column(String(10), default="sync")
    created_by: Mapped[int | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    #: the VCALENDAR as last seen (the truth to re-read)
    ics: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("workspace_id", "uid", "recurrence_id"),
        Index("ix_events_ws_start", "workspace_id", "starts_at", "id"),
    )


class EventOccurrence(Base):
    """One instance of an event inside the sync window, in UTC."""

    __tablename__ = "event_occurrences"
    id: Mapped[int] = pk()
    event_id: Mapped[int] = fk("events.id")
    #: the instance's original start (RECURRENCE-ID) in UTC ISO form; "" when not recurring
    recurrence_id: Mapped[str] = mapped_column(String(64), default="")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    tzid: Mapped[str | None] = mapped_column(String(100))
    #: confirmed | tentative | cancelled (an EXDATE-less cancelled instance)
    status: Mapped[str] = mapped_column(String(12), default="confirmed")
    summary: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        UniqueConstraint("event_id", "recurrence_id"),
        Index("ix_event_occurrences_start", "starts_at", "event_id"),
    )


class EventAttendee(Base):
    __tablename__ = "event_attendees"
    event_id: Mapped[int] = mapped_column(
        Id, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    #: NEEDS-ACTION | ACCEPTED | DECLINED | TENTATIVE | DELEGATED
    partstat: Mapped[str] = mapped_column(String(20), default="NEEDS-ACTION")
    role: Mapped[str] = mapped_column(String(20), default="REQ-PARTICIPANT")
    #: INDIVIDUAL | ROOM | RESOURCE | GROUP
    cutype: Mapped[str] = mapped_column(String(20), default="INDIVIDUAL")


class EventPlacement(Base):
    """One calendar object resource of a user's calendar; ``event_id`` None: not stored
    (out of scope or window), remembered so it is not fetched again until it changes."""

    __tablename__ = "event_placements"
    id: Mapped[int] = pk()
    calendar_id: Mapped[int] = fk("calendars.id")
    user_id: Mapped[int] = fk("users.id")
    event_id: Mapped[int | None] = fk("events.id", nullable=True, ondelete="SET NULL")
    href: Mapped[str] = mapped_column(String(2000))
    etag: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (UniqueConstraint("calendar_id", "href"),)


class EventLink(Base):
    """A meeting on a contact's, lead's or deal's timeline, and why."""

    __tablename__ = "event_links"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    event_id: Mapped[int] = fk("events.id")
    subject_type: Mapped[str] = mapped_column(String(10))
    subject_id: Mapped[int] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(String(200))
    #: the event's start, copied (like timeline_entries.message_date) for index-order reads
    starts_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(10), default="auto")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("event_id", "subject_type", "subject_id"),
        Index(
            "ix_event_links_subject_start",
            "workspace_id",
            "subject_type",
            "subject_id",
            "starts_at",
            "event_id",
        ),
    )
