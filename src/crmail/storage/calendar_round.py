"""A calendar sync round's writes, in one transaction: events new to the workspace
inserted set-based, stored ones updated, placements kept in step with the server.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmail.domain.autocreate import Blocklist
from crmail.domain.ical import ParsedEvent
from crmail.domain.meetings import EventSkip, decide_event
from crmail.domain.scope import AddressBook, Link
from crmail.storage import autocreate, mail, notify
from crmail.storage.bulk import insert_rows
from crmail.storage.calendar_events import cancel_if_orphan, store_event
from crmail.storage.calendar_models import (
    CalendarEvent,
    CalendarRow,
    EventAttendee,
    EventLink,
    EventOccurrence,
    EventPlacement,
)
from crmail.storage.calendar_views import Fetched, RoundResult, SyncJob
from crmail.storage.models import utcnow


def _insert_events(
    s: Session,
    workspace_id: int,
    fresh: dict[tuple[str, str], tuple[ParsedEvent, str, dict[tuple[str, int], Link]]],
) -> dict[tuple[str, str], int]:
    """Insert events new to the workspace with their occurrences, attendees and links,
    one INSERT per table (:func:`crmail.storage.bulk.insert_rows`); their ids by key."""
    if not fresh:
        return {}
    insert_rows(
        s,
        CalendarEvent,
        [
            {
                "workspace_id": workspace_id,
                "uid": pe.uid,
                "recurrence_id": pe.recurrence_id,
                "summary": pe.summary,
                "description": pe.description,
                "location": pe.location,
                "organizer_email": pe.organizer.email if pe.organizer else None,
                "organizer_name": pe.organizer.name if pe.organizer else "",
                "status": pe.status,
                "starts_at": pe.starts_at,
                "ends_at": pe.ends_at,
                "all_day": pe.all_day,
                "tzid": pe.tzid,
                "rrule": pe.rrule,
                "sequence": pe.sequence,
                "origin": "sync",
                "created_by": None,
                "ics": ics,
            }
            for pe, ics, _ in fresh.values()
        ],
    )
    ids: dict[tuple[str, str], int] = {}
    uids = sorted({uid for uid, _ in fresh})
    for i in range(0, len(uids), 500):
        for eid, uid, rid in s.execute(
            select(CalendarEvent.id, CalendarEvent.uid, CalendarEvent.recurrence_id).where(
                CalendarEvent.workspace_id == workspace_id,
                CalendarEvent.uid.in_(uids[i : i + 500]),
            )
        ):
            if (uid, rid) in fresh:
                ids[(uid, rid)] = eid
    occurrences: list[dict[str, object]] = []
    attendees: list[dict[str, object]] = []
    links: list[dict[str, object]] = []
    hooks = notify.wants(s, workspace_id, "meeting.created")
    for key, (pe, _, found) in fresh.items():
        eid = ids[key]
        occurrences.extend(
            {
                "event_id": eid,
                "recurrence_id": o.recurrence_id,
                "starts_at": o.starts_at,
                "ends_at": o.ends_at,
                "all_day": o.all_day,
                "tzid": o.tzid,
                "status": o.status,
                "summary": o.summary,
            }
            for o in pe.occurrences
        )
        attendees.extend(
            {
                "event_id": eid,
                "email": a.email,
                "name": a.name,
                "partstat": a.partstat,
                "role": a.role,
                "cutype": a.cutype,
            }
            for a in pe.attendees
        )
        links.extend(
            {
                "workspace_id": workspace_id,
                "event_id": eid,
                "subject_type": x.subject_type,
                "subject_id": x.subject_id,
                "reason": x.reason,
                "starts_at": pe.starts_at,
            }
            for x in found.values()
        )
        if hooks:
            notify.emit(
                s,
                workspace_id,
                "meeting.created",
                {
                    "meeting_id": eid,
                    "uid": pe.uid,
                    "summary": pe.summary[:200],
                    "starts_at": pe.starts_at.isoformat(),
                    "ends_at": pe.ends_at.isoformat(),
                    "status": pe.status,
                },
            )
    insert_rows(s, EventOccurrence, occurrences)
    insert_rows(s, EventAttendee, attendees)
    insert_rows(s, EventLink, links)
    return ids


def apply_round(
    s: Session,
    job: SyncJob,
    calendar_id: int,
    fetched: Sequence[Fetched],
    gone: Sequence[str],
    *,
    token: str | None,
    ctag: str | None,
    skip_unreadable: Sequence[str] = (),
) -> RoundResult:
    """Store one round of a calendar in one transaction: changed resources (scope and
    links decided here, against the address book as it is now), removed hrefs, and the
    new token — written together, so a crash repeats the round instead of losing it."""
    if not fetched and not gone and not skip_unreadable:
        # A quiet round: only the token moves (reading the address book would dominate).
        s.execute(
            update(CalendarRow)
            .where(CalendarRow.id == calendar_id)
            .values(sync_token=token, ctag=ctag, last_sync_at=utcnow())
        )
        return RoundResult(0, 0, 0, {})
    book: AddressBook = mail.address_book(s, job.workspace_id)
    block: Blocklist | None = None
    stored = updated = cancelled = 0
    skipped: dict[str, int] = {}
    placements = {
        p.href: p
        for p in s.scalars(
            select(EventPlacement).where(
                EventPlacement.calendar_id == calendar_id,
                EventPlacement.href.in_([f.href for f in fetched] + list(gone)),
            )
        )
    }
    uids = sorted({f.event.uid for f in fetched if f.event is not None and f.event.uid})
    known: dict[tuple[str, str], CalendarEvent] = {}
    for i in range(0, len(uids), 500):
        for ev in s.scalars(
            select(CalendarEvent).where(
                CalendarEvent.workspace_id == job.workspace_id,
                CalendarEvent.uid.in_(uids[i : i + 500]),
            )
        ):
            known[(ev.uid, ev.recurrence_id)] = ev
    touched: set[int] = set()
    # Events new to the workspace are inserted set-based after the loop (one INSERT per
    # table for the batch); updates of stored ones go through the ORM one by one.
    fresh: dict[tuple[str, str], tuple[ParsedEvent, str, dict[tuple[str, int], Link]]] = {}
    #: href -> the new event it holds (its id is known once inserted)
    fresh_hrefs: dict[str, tuple[str, str]] = {}
    #: placements of hrefs not seen before: href -> (etag, event id or None)
    new_placements: dict[str, tuple[str | None, int | None]] = {}
    for f in fetched:
        event_id: int | None = None
        pe = f.event
        if pe is None or not pe.uid:
            skipped[EventSkip.UNREADABLE] = skipped.get(EventSkip.UNREADABLE, 0) + 1
        elif not pe.occurrences:
            skipped[EventSkip.OUTSIDE_WINDOW] = skipped.get(EventSkip.OUTSIDE_WINDOW, 0) + 1
        else:
            if job.auto_create and block is None:
                block = autocreate.blocklist(s, job.workspace_id)
            decision = decide_event(
                pe, book, auto_create=job.auto_create, blocklist=block or Blocklist()
            )
            if decision.create:
                new = autocreate.create_contacts(s, job.workspace_id, decision.create)
                book = autocreate.with_contacts(book, new)
                decision = decide_event(pe, book, auto_create=False, blocklist=Blocklist())
            key = (pe.uid, pe.recurrence_id)
            if decision.store and key not in known:
                if key not in fresh:
                    fresh[key] = (pe, f.ics, {})
                    stored += 1
                fresh[key][2].update(((x.subject_type, x.subject_id), x) for x in decision.links)
                fresh_hrefs[f.href] = key
            elif decision.store:
                event_id, kind = store_event(
                    s, job.workspace_id, pe, f.ics, decision.links, known=known
                )
                if kind == "meeting.created":
                    stored += 1
                elif kind == "meeting.cancelled":
                    cancelled += 1
                elif kind is not None:
                    updated += 1
            else:
                reason = str(decision.skip)
                skipped[reason] = skipped.get(reason, 0) + 1
        p = placements.get(f.href)
        if p is None:
            new_placements[f.href] = (f.etag, event_id)
            continue
        if p.event_id is not None and p.event_id != event_id:
            touched.add(p.event_id)
        p.etag = f.etag
        p.event_id = event_id
    ids = _insert_events(s, job.workspace_id, fresh)
    for href, key in fresh_hrefs.items():
        if href in new_placements:
            new_placements[href] = (new_placements[href][0], ids[key])
        else:
            placements[href].event_id = ids[key]
    insert_rows(
        s,
        EventPlacement,
        [
            {
                "calendar_id": calendar_id,
                "user_id": job.user_id,
                "href": href[:2000],
                "etag": etag,
                "event_id": event_id,
            }
            for href, (etag, event_id) in new_placements.items()
        ],
    )
    for href in skip_unreadable:
        p = placements.get(href)
        if p is None:
            s.add(EventPlacement(calendar_id=calendar_id, user_id=job.user_id, href=href[:2000]))
    for href in gone:
        p = placements.get(href)
        if p is None:
            continue
        if p.event_id is not None:
            touched.add(p.event_id)
        s.delete(p)
    s.flush()
    for event_id in sorted(touched):
        if cancel_if_orphan(s, event_id):
            cancelled += 1
    c = s.get_one(CalendarRow, calendar_id)
    c.sync_token = token
    c.ctag = ctag
    c.synced = (c.synced or 0) + stored
    if skipped:
        total = dict(c.skipped or {})
        for k, v in skipped.items():
            total[k] = total.get(k, 0) + v
        c.skipped = total
    c.last_sync_at = utcnow()
    s.flush()
    return RoundResult(stored, updated, cancelled, skipped)
