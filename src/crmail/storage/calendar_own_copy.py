"""Meetings scheduled from the CRM: the calendar they go into, where an existing one
lives in its organizer's calendar, and recording what the CRM wrote there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.domain.autocreate import Blocklist
from crmail.domain.ical import ParsedEvent
from crmail.domain.meetings import decide_event
from crmail.errors import InvalidInput
from crmail.storage import mail
from crmail.storage.calendar_accounts import selected_calendars, sync_job_of
from crmail.storage.calendar_events import store_event
from crmail.storage.calendar_meetings import visible_event
from crmail.storage.calendar_models import CalendarAccount, CalendarRow, EventPlacement
from crmail.storage.calendar_views import CalendarState, SyncJob
from crmail.storage.views import UserInfo


@dataclass(frozen=True, slots=True)
class OwnCopy:
    """Where a CRM meeting lives in its organizer's calendar."""

    event_id: int
    calendar_id: int
    calendar_url: str
    href: str
    etag: str | None
    sequence: int
    uid: str


def default_calendar(
    s: Session, user: UserInfo, account_id: int | None
) -> tuple[SyncJob, CalendarState]:
    """The calendar new meetings go into: the first selected one of the user's account."""
    q = (
        select(CalendarAccount)
        .where(CalendarAccount.user_id == user.id, CalendarAccount.state != "disconnected")
        .order_by(CalendarAccount.id)
    )
    if account_id is not None:
        q = q.where(CalendarAccount.id == account_id)
    a = s.scalars(q).first()
    if a is None:
        raise InvalidInput(
            "connect a calendar to schedule meetings", hint="Settings → Calendar → Connect"
        )
    cals = selected_calendars(s, a.id)
    if not cals:
        raise InvalidInput(
            "no calendar of this account is selected or synced yet",
            hint="select a calendar in Settings → Calendar, or wait for the first sync",
        )
    return sync_job_of(a), cals[0]


def own_copy(s: Session, user: UserInfo, event_id: int) -> tuple[SyncJob, OwnCopy]:
    ev = visible_event(s, user, event_id)
    row = s.execute(
        select(EventPlacement, CalendarRow, CalendarAccount)
        .join(CalendarRow, CalendarRow.id == EventPlacement.calendar_id)
        .join(CalendarAccount, CalendarAccount.id == CalendarRow.account_id)
        .where(EventPlacement.event_id == ev.id, EventPlacement.user_id == user.id)
        .limit(1)
    ).first()
    if row is None:
        raise InvalidInput(
            "this meeting is not in your calendar", hint="only its organizer can change it"
        )
    p, c, a = row
    return sync_job_of(a), OwnCopy(ev.id, c.id, c.url, p.href, p.etag, ev.sequence, ev.uid)


def record_own_copy(
    s: Session,
    user: UserInfo,
    calendar_id: int,
    href: str,
    etag: str | None,
    pe: ParsedEvent,
    ics: str,
) -> tuple[int, str | None]:
    """Store a meeting the CRM just wrote into the user's calendar, and its placement
    (the next sync sees the same etag and fetches nothing)."""
    book = mail.address_book(s, user.workspace_id)
    decision = decide_event(pe, book, auto_create=False, blocklist=Blocklist())
    event_id, kind = store_event(
        s, user.workspace_id, pe, ics, decision.links, origin="crm", created_by=user.id
    )
    p = s.scalar(
        select(EventPlacement).where(
            EventPlacement.calendar_id == calendar_id, EventPlacement.href == href
        )
    )
    if p is None:
        p = EventPlacement(calendar_id=calendar_id, user_id=user.id, href=href)
        s.add(p)
    p.etag = etag
    p.event_id = event_id
    s.flush()
    return event_id, kind
