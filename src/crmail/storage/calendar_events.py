"""The event store: one event per workspace (UID + RECURRENCE-ID) with its occurrences,
attendees and links, written one by one. An event that leaves every calendar stays,
marked cancelled: a meeting on a timeline never silently vanishes.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crmail.domain.ical import ParsedEvent
from crmail.domain.scope import Link
from crmail.storage import notify
from crmail.storage.calendar_models import (
    CalendarEvent,
    EventAttendee,
    EventLink,
    EventOccurrence,
    EventPlacement,
)


def _replace_details(
    s: Session,
    ev: CalendarEvent,
    pe: ParsedEvent,
    answered: dict[str, str] | None = None,
    *,
    fresh: bool = False,
) -> None:
    """``answered``: attendees' answers known from iMIP replies, kept while the calendar
    copy still says NEEDS-ACTION (a server without scheduling never learns them).
    ``fresh``: the event was inserted just now (nothing to replace)."""
    answered = answered or {}
    if not fresh:
        s.execute(delete(EventOccurrence).where(EventOccurrence.event_id == ev.id))
        s.execute(delete(EventAttendee).where(EventAttendee.event_id == ev.id))
    s.add_all(
        EventOccurrence(
            event_id=ev.id,
            recurrence_id=o.recurrence_id,
            starts_at=o.starts_at,
            ends_at=o.ends_at,
            all_day=o.all_day,
            tzid=o.tzid,
            status=o.status,
            summary=o.summary,
        )
        for o in pe.occurrences
    )
    s.add_all(
        EventAttendee(
            event_id=ev.id,
            email=a.email,
            name=a.name,
            partstat=answered.get(a.email, a.partstat)
            if a.partstat == "NEEDS-ACTION"
            else a.partstat,
            role=a.role,
            cutype=a.cutype,
        )
        for a in pe.attendees
    )


def _fill(ev: CalendarEvent, pe: ParsedEvent, ics: str) -> None:
    ev.summary = pe.summary
    ev.description = pe.description
    ev.location = pe.location
    ev.organizer_email = pe.organizer.email if pe.organizer else None
    ev.organizer_name = pe.organizer.name if pe.organizer else ""
    ev.status = pe.status
    ev.starts_at = pe.starts_at
    ev.ends_at = pe.ends_at
    ev.all_day = pe.all_day
    ev.tzid = pe.tzid
    ev.rrule = pe.rrule
    ev.sequence = pe.sequence
    ev.ics = ics


def _add_links(
    s: Session, ev: CalendarEvent, links: Iterable[Link], *, fresh: bool = False
) -> None:
    have = (
        set()
        if fresh
        else set(
            s.execute(
                select(EventLink.subject_type, EventLink.subject_id).where(
                    EventLink.event_id == ev.id
                )
            ).all()
        )
    )
    for link in links:
        if (link.subject_type, link.subject_id) in have:
            continue
        s.add(
            EventLink(
                workspace_id=ev.workspace_id,
                event_id=ev.id,
                subject_type=link.subject_type,
                subject_id=link.subject_id,
                reason=link.reason,
                starts_at=ev.starts_at,
            )
        )


def meeting_payload(ev: CalendarEvent) -> dict[str, object]:
    return {
        "meeting_id": ev.id,
        "uid": ev.uid,
        "summary": ev.summary[:200],
        "starts_at": ev.starts_at.isoformat(),
        "ends_at": ev.ends_at.isoformat(),
        "status": ev.status,
    }


def store_event(
    s: Session,
    workspace_id: int,
    pe: ParsedEvent,
    ics: str,
    links: Iterable[Link],
    *,
    origin: str = "sync",
    created_by: int | None = None,
    known: dict[tuple[str, str], CalendarEvent] | None = None,
) -> tuple[int, str | None]:
    """Insert or update the event (by UID + RECURRENCE-ID); returns its id and the
    webhook it calls for ("meeting.created", "meeting.updated", "meeting.cancelled", None).

    ``known``: the batch's stored events, read in one query by the caller (a key absent
    from it is new)."""
    if known is not None:
        ev = known.get((pe.uid, pe.recurrence_id))
    else:
        ev = s.scalar(
            select(CalendarEvent).where(
                CalendarEvent.workspace_id == workspace_id,
                CalendarEvent.uid == pe.uid,
                CalendarEvent.recurrence_id == pe.recurrence_id,
            )
        )
    new = ev is None
    kind: str | None
    answered: dict[str, str] = {}
    if ev is None:
        ev = CalendarEvent(
            workspace_id=workspace_id,
            uid=pe.uid,
            recurrence_id=pe.recurrence_id,
            origin=origin,
            created_by=created_by,
        )
        _fill(ev, pe, ics)
        s.add(ev)
        s.flush()
        kind = "meeting.created"
    elif ev.ics == ics:
        kind = None
    else:
        was = ev.status
        if pe.sequence == ev.sequence:  # same version of the meeting: answers still stand
            answered = dict(
                s.execute(
                    select(EventAttendee.email, EventAttendee.partstat).where(
                        EventAttendee.event_id == ev.id,
                        EventAttendee.partstat != "NEEDS-ACTION",
                    )
                ).all()
            )
        _fill(ev, pe, ics)
        s.execute(
            update(EventLink).where(EventLink.event_id == ev.id).values(starts_at=ev.starts_at)
        )
        kind = (
            "meeting.cancelled"
            if pe.status == "cancelled" and was != "cancelled"
            else "meeting.updated"
        )
    if kind is not None:
        _replace_details(s, ev, pe, answered, fresh=new)
    _add_links(s, ev, links, fresh=new)
    s.flush()
    if known is not None:
        known[(pe.uid, pe.recurrence_id)] = ev
    if kind is not None:
        notify.emit(s, workspace_id, kind, meeting_payload(ev))
    return ev.id, kind


def cancel_if_orphan(s: Session, event_id: int) -> bool:
    """A meeting gone from every calendar stays on the timeline, marked cancelled."""
    left = s.scalar(
        select(func.count()).select_from(EventPlacement).where(EventPlacement.event_id == event_id)
    )
    ev = s.get(CalendarEvent, event_id)
    if left or ev is None or ev.status == "cancelled":
        return False
    ev.status = "cancelled"
    s.execute(
        update(EventOccurrence)
        .where(EventOccurrence.event_id == event_id)
        .values(status="cancelled")
    )
    s.flush()
    notify.emit(s, ev.workspace_id, "meeting.cancelled", meeting_payload(ev))
    return True


def set_partstat(s: Session, workspace_id: int, uid: str, email: str, partstat: str) -> int | None:
    """An attendee's answer (an iMIP REPLY); the meeting's id, or None when unknown."""
    ev = s.scalar(
        select(CalendarEvent).where(
            CalendarEvent.workspace_id == workspace_id,
            CalendarEvent.uid == uid,
            CalendarEvent.recurrence_id == "",
        )
    )
    if ev is None:
        return None
    row = s.get(EventAttendee, (ev.id, email))
    if row is None or row.partstat == partstat:
        return ev.id if row is not None else None
    row.partstat = partstat
    s.flush()
    notify.emit(
        s,
        workspace_id,
        "meeting.updated",
        {**meeting_payload(ev), "attendee": email, "partstat": partstat},
    )
    return ev.id
