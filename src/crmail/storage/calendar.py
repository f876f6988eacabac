"""Calendar sync storage: calendar accounts, calendars, events and meeting timelines.

Functions take a ``Session`` first and return frozen dataclasses, like ``storage.crm``.
A calendar account belongs to one user; another user's id is "not found". Events are
stored once per workspace (UID + RECURRENCE-ID); a user's copy is an
``EventPlacement``. An event that leaves every calendar stays, marked cancelled: a
meeting on a timeline never silently vanishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crmail.crypto import SecretBox
from crmail.domain.autocreate import Blocklist
from crmail.domain.ical import ParsedEvent
from crmail.domain.meetings import EventSkip, decide_event
from crmail.domain.scope import AddressBook, Link
from crmail.errors import InvalidInput, NotFound
from crmail.storage import autocreate, mail, notify, paging
from crmail.storage.bulk import insert_rows
from crmail.storage.calendar_models import (
    CalendarAccount,
    CalendarEvent,
    CalendarRow,
    EventAttendee,
    EventLink,
    EventOccurrence,
    EventPlacement,
)
from crmail.storage.models import MailAccount, utcnow
from crmail.storage.timeline import check_subject
from crmail.storage.views import Page, UserInfo

#: the meeting webhooks (added to storage.events.EVENT_TYPES)
MEETING_EVENTS = ("meeting.created", "meeting.updated", "meeting.cancelled")


# --- value objects ------------------------------------------------------------------------


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


# --- accounts ---------------------------------------------------------------------------------


def _account_view(a: CalendarAccount) -> CalendarAccountView:
    return CalendarAccountView(
        a.id,
        a.user_id,
        a.provider,
        a.url,
        a.username,
        a.preset,
        a.mail_account_id,
        a.auto_create,
        a.state,
        a.last_error,
        a.last_sync_at,
        a.created_at,
    )


def _account_row(s: Session, user: UserInfo, account_id: int) -> CalendarAccount:
    a = s.get(CalendarAccount, account_id)
    if a is None or a.user_id != user.id or a.workspace_id != user.workspace_id:
        raise NotFound(f"calendar account {account_id} not found")
    return a


def add_account(
    s: Session,
    user: UserInfo,
    box: SecretBox,
    *,
    url: str,
    username: str,
    password: str,
    preset: str | None = None,
    mail_account_id: int | None = None,
    auto_create: bool = False,
) -> CalendarAccountView:
    if not url.strip() or not username.strip():
        raise InvalidInput("a CalDAV URL and a username are needed")
    if mail_account_id is not None:
        owner = s.scalar(select(MailAccount.user_id).where(MailAccount.id == mail_account_id))
        if owner != user.id:
            raise NotFound(f"account {mail_account_id} not found")
    a = CalendarAccount(
        workspace_id=user.workspace_id,
        user_id=user.id,
        mail_account_id=mail_account_id,
        preset=preset,
        url=url.strip()[:2000],
        username=username.strip()[:320],
        secret=box.seal({"password": password}),
        auto_create=auto_create,
    )
    s.add(a)
    s.flush()
    return _account_view(a)


def list_accounts(s: Session, user: UserInfo) -> list[CalendarAccountView]:
    rows = s.scalars(
        select(CalendarAccount)
        .where(CalendarAccount.user_id == user.id)
        .order_by(CalendarAccount.id)
    )
    return [_account_view(a) for a in rows]


def get_account(s: Session, user: UserInfo, account_id: int) -> CalendarAccountView:
    return _account_view(_account_row(s, user, account_id))


def delete_account(s: Session, user: UserInfo, account_id: int) -> None:
    """Disconnect: the calendars and placements go, the meetings stay on the timelines.

    The calendar of a mail account's grant (Google, Graph) stays as a disconnected row:
    the loop would otherwise make it again for the mail account."""
    a = _account_row(s, user, account_id)
    cal_ids = list(s.scalars(select(CalendarRow.id).where(CalendarRow.account_id == a.id)))
    if cal_ids:
        s.execute(delete(EventPlacement).where(EventPlacement.calendar_id.in_(cal_ids)))
        s.execute(delete(CalendarRow).where(CalendarRow.id.in_(cal_ids)))
    if a.provider in GRANT_CALENDARS.values():
        a.state = "disconnected"
    else:
        s.delete(a)
    s.flush()


def sync_jobs(s: Session) -> list[SyncJob]:
    rows = s.scalars(
        select(CalendarAccount)
        .where(CalendarAccount.state != "disconnected")
        .order_by(CalendarAccount.id)
    )
    return [_job(a) for a in rows]


def _job(a: CalendarAccount) -> SyncJob:
    return SyncJob(
        a.id,
        a.workspace_id,
        a.user_id,
        a.url,
        a.username,
        a.secret,
        a.auto_create,
        a.provider,
        a.mail_account_id,
    )


def job_for(s: Session, user: UserInfo, account_id: int) -> SyncJob:
    return _job(_account_row(s, user, account_id))


#: mail account providers whose OAuth grant also opens a calendar
GRANT_CALENDARS = {"gmail": "google", "graph": "microsoft"}


def ensure_grant_calendars(s: Session, box: SecretBox) -> int:
    """A calendar account for every connected Gmail or Graph account that has none (its
    grant reaches the calendar when it carries the calendar scope; a round finds out).
    Returns how many were made."""
    have = select(CalendarAccount.mail_account_id).where(
        CalendarAccount.mail_account_id.is_not(None),
        CalendarAccount.provider.in_(GRANT_CALENDARS.values()),
    )
    made = 0
    for m in s.scalars(
        select(MailAccount).where(
            MailAccount.provider.in_(GRANT_CALENDARS),
            MailAccount.state != "disconnected",
            MailAccount.id.not_in(have),
        )
    ):
        s.add(
            CalendarAccount(
                workspace_id=m.workspace_id,
                user_id=m.user_id,
                mail_account_id=m.id,
                provider=GRANT_CALENDARS[m.provider],
                url=GRANT_CALENDARS[m.provider],
                username=m.email,
                secret=box.seal({}),
            )
        )
        made += 1
    s.flush()
    return made


def record_account_result(s: Session, account_id: int, error: str | None, code: str | None) -> None:
    s.execute(
        update(CalendarAccount)
        .where(CalendarAccount.id == account_id)
        .values(
            state="error" if error else "active",
            last_error=error,
            last_error_code=code,
            last_sync_at=utcnow(),
        )
    )


# --- calendars ----------------------------------------------------------------------------------


def _calendar_view(c: CalendarRow) -> CalendarView:
    return CalendarView(
        c.id,
        c.account_id,
        c.url,
        c.name,
        c.selected,
        c.synced,
        dict(c.skipped or {}),
        c.last_sync_at,
    )


def upsert_calendars(s: Session, account_id: int, found: Sequence[tuple[str, str]]) -> None:
    """Remember the server's calendars (url, name); new ones start selected."""
    known = {
        c.url: c for c in s.scalars(select(CalendarRow).where(CalendarRow.account_id == account_id))
    }
    for url, name in found:
        row = known.get(url)
        if row is None:
            s.add(CalendarRow(account_id=account_id, url=url[:2000], name=name[:300]))
        elif row.name != name:
            row.name = name[:300]
    s.flush()


def list_calendars(s: Session, user: UserInfo, account_id: int) -> list[CalendarView]:
    _account_row(s, user, account_id)
    rows = s.scalars(
        select(CalendarRow).where(CalendarRow.account_id == account_id).order_by(CalendarRow.id)
    )
    return [_calendar_view(c) for c in rows]


def select_calendar(
    s: Session, user: UserInfo, account_id: int, calendar_id: int, selected: bool
) -> CalendarView:
    _account_row(s, user, account_id)
    c = s.get(CalendarRow, calendar_id)
    if c is None or c.account_id != account_id:
        raise NotFound(f"calendar {calendar_id} not found")
    c.selected = selected
    s.flush()
    return _calendar_view(c)


def selected_calendars(s: Session, account_id: int) -> list[CalendarState]:
    rows = list(
        s.scalars(
            select(CalendarRow)
            .where(CalendarRow.account_id == account_id, CalendarRow.selected.is_(True))
            .order_by(CalendarRow.id)
        )
    )
    out: list[CalendarState] = []
    for c in rows:
        etags = dict(
            s.execute(
                select(EventPlacement.href, EventPlacement.etag).where(
                    EventPlacement.calendar_id == c.id
                )
            ).all()
        )
        out.append(CalendarState(c.id, c.url, c.sync_token, c.ctag, etags))
    return out


def forget_token(s: Session, calendar_id: int) -> None:
    s.execute(update(CalendarRow).where(CalendarRow.id == calendar_id).values(sync_token=None))


# --- a sync round's writes -------------------------------------------------------------------


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


def _payload(ev: CalendarEvent) -> dict[str, object]:
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
        notify.emit(s, workspace_id, kind, _payload(ev))
    return ev.id, kind


def _cancel_if_orphan(s: Session, event_id: int) -> bool:
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
    notify.emit(s, ev.workspace_id, "meeting.cancelled", _payload(ev))
    return True


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
        if _cancel_if_orphan(s, event_id):
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
        {**_payload(ev), "attendee": email, "partstat": partstat},
    )
    return ev.id


# --- reads -----------------------------------------------------------------------------------------


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


def _visible_event(s: Session, user: UserInfo, event_id: int) -> CalendarEvent:
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
    ev = _visible_event(s, user, event_id)
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


# --- meetings scheduled from the CRM ------------------------------------------------------------


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
    return _job(a), cals[0]


def own_copy(s: Session, user: UserInfo, event_id: int) -> tuple[SyncJob, OwnCopy]:
    ev = _visible_event(s, user, event_id)
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
    return _job(a), OwnCopy(ev.id, c.id, c.url, p.href, p.etag, ev.sequence, ev.uid)


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
