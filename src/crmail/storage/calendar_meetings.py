"""The read side of calendars: meetings by id, a CRM record's meeting timeline and a
user's upcoming meetings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.errors import NotFound
from crmail.storage import paging
from crmail.storage.calendar_models import (
    CalendarEvent,
    EventAttendee,
    EventLink,
    EventOccurrence,
    EventPlacement,
)
from crmail.storage.calendar_views import AttendeeView, MeetingItem, MeetingView, UpcomingItem
from crmail.storage.timeline import check_subject
from crmail.storage.views import Page, UserInfo


def meetings_by_id(s: Session, ids: Sequence[int]) -> dict[int, MeetingView]:
    """The meetings of ``ids`` (two queries, whatever their number)."""
    return _meetings(s, ids)


def _meetings(s: Session, ids: Sequence[int]) -> dict[int, MeetingView]:
    if not ids:
        return {}
    attendees: dict[int, list[AttendeeView]] = {}
    for a in s.scalars(
        select(EventAttendee).where(EventAttendee.event_id.in_(ids)).order_by(EventAttendee.email)
    ):
        attendees.setdefault(a.event_id, []).append(
            AttendeeView(a.email, a.name, a.partstat, a.role)
        )
    return {
        ev.id: MeetingView(
            ev.id,
            ev.uid,
            ev.summary,
            ev.description,
            ev.location,
            ev.organizer_email,
            ev.status,
            ev.starts_at,
            ev.ends_at,
            ev.all_day,
            ev.tzid,
            ev.rrule is not None,
            ev.origin,
            tuple(attendees.get(ev.id, ())),
        )
        for ev in s.scalars(select(CalendarEvent).where(CalendarEvent.id.in_(ids)))
    }


def visible_event(s: Session, user: UserInfo, event_id: int) -> CalendarEvent:
    ev = s.get(CalendarEvent, event_id)
    if ev is None or ev.workspace_id != user.workspace_id:
        raise NotFound(f"meeting {event_id} not found")
    linked = s.scalar(select(EventLink.id).where(EventLink.event_id == event_id).limit(1))
    mine = s.scalar(
        select(EventPlacement.id)
        .where(EventPlacement.event_id == event_id, EventPlacement.user_id == user.id)
        .limit(1)
    )
    # Meetings on a CRM record are the team's; a meeting on nobody's record, only its owner's.
    if linked is None and mine is None and ev.created_by != user.id:
        raise NotFound(f"meeting {event_id} not found")
    return ev


def get_meeting(s: Session, user: UserInfo, event_id: int) -> MeetingView:
    ev = visible_event(s, user, event_id)
    return _meetings(s, [ev.id])[ev.id]


def meeting_timeline(
    s: Session,
    viewer: UserInfo,
    subject_type: str,
    subject_id: int,
    limit: int = 50,
    before: str | None = None,
) -> Page[MeetingItem]:
    """Meetings linked to a contact, lead or deal, latest start first, paged by keyset."""
    check_subject(s, viewer.workspace_id, subject_type, subject_id)
    e = EventLink
    q = select(e.event_id, e.reason, e.starts_at).where(
        e.workspace_id == viewer.workspace_id,
        e.subject_type == subject_type,
        e.subject_id == subject_id,
    )
    cond = paging.older_than(e.starts_at, e.event_id, before)
    if cond is not None:
        q = q.where(cond)
    n = paging.clamp(limit)
    rows = s.execute(q.order_by(e.starts_at.desc(), e.event_id.desc()).limit(n + 1)).all()
    page = rows[:n]
    found = _meetings(s, [r[0] for r in page])
    items = tuple(MeetingItem(found[eid], reason) for eid, reason, _ in page)
    nxt = paging.encode_cursor(page[-1][2], page[-1][0]) if len(rows) > n else None
    return Page(items, nxt)


def upcoming(s: Session, user: UserInfo, now: datetime, limit: int = 50) -> list[UpcomingItem]:
    """The user's meetings from ``now`` on, one row per occurrence, soonest first."""
    mine = select(EventPlacement.event_id).where(
        EventPlacement.user_id == user.id, EventPlacement.event_id.is_not(None)
    )
    created = select(CalendarEvent.id).where(CalendarEvent.created_by == user.id)
    o = EventOccurrence
    rows = s.execute(
        select(o.event_id, o.starts_at, o.ends_at, o.status)
        .where(o.ends_at >= now, o.event_id.in_(mine.union(created).scalar_subquery()))
        .order_by(o.starts_at, o.event_id)
        .limit(paging.clamp(limit))
    ).all()
    found = _meetings(s, sorted({r[0] for r in rows}))
    return [UpcomingItem(found[eid], start, end, status) for eid, start, end, status in rows]
