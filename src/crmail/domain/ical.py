"""iCalendar in and out: one calendar object resource read into a :class:`ParsedEvent`
with its occurrences inside a window, and meetings written as VEVENTs and iMIP bodies.

Parsing is ``icalendar``'s, recurrence expansion ``recurring-ical-events``' (RRULE,
RDATE, EXDATE, overridden and cancelled instances, DST through the zone's own rules).
Times are stored in UTC with the original TZID beside them; all-day events keep their
date as midnight UTC and the ``all_day`` flag; floating times are read as UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import icalendar
import recurring_ical_events

from crmail.domain.addresses import normalize_email
from crmail.errors import InvalidInput

STATUSES = ("confirmed", "tentative", "cancelled")
PARTSTATS = ("NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED")
PRODID = "-//crmail//calendar sync//EN"


@dataclass(frozen=True, slots=True)
class Attendee:
    email: str
    name: str = ""
    partstat: str = "NEEDS-ACTION"
    role: str = "REQ-PARTICIPANT"
    cutype: str = "INDIVIDUAL"


@dataclass(frozen=True, slots=True)
class Occurrence:
    #: the instance's original start, UTC ISO ("" for a single event)
    recurrence_id: str
    starts_at: datetime
    ends_at: datetime
    all_day: bool
    tzid: str | None
    status: str
    summary: str


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    uid: str
    recurrence_id: str
    summary: str
    description: str
    location: str
    organizer: Attendee | None
    status: str
    private: bool
    starts_at: datetime
    ends_at: datetime
    all_day: bool
    tzid: str | None
    rrule: str | None
    sequence: int
    attendees: tuple[Attendee, ...]
    occurrences: tuple[Occurrence, ...]


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def around(cls, now: datetime, days_back: int = 90, days_ahead: int = 365) -> Window:
        return cls(now - timedelta(days=days_back), now + timedelta(days=days_ahead))


def _text(comp: Any, name: str) -> str:
    value = comp.get(name)
    return str(value).strip() if value is not None else ""


def _utc(value: date | datetime) -> tuple[datetime, bool, str | None]:
    """(UTC instant, all-day, TZID) of a DTSTART-like value."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC), False, None
        tzid = getattr(value.tzinfo, "key", None) or getattr(value.tzinfo, "zone", None)
        if tzid is None:
            name = value.tzinfo.tzname(value)
            tzid = None if name in (None, "UTC") else str(name)
        return value.astimezone(UTC), False, (None if tzid == "UTC" else tzid)
    return datetime.combine(value, time(), tzinfo=UTC), True, None


def _rid(comp: Any) -> str:
    rid = comp.get("RECURRENCE-ID")
    if rid is None:
        return ""
    when, all_day, _ = _utc(rid.dt)
    return when.date().isoformat() if all_day else when.isoformat()


def _status(comp: Any) -> str:
    value = _text(comp, "STATUS").lower()
    return value if value in STATUSES else "confirmed"


def _person(prop: Any) -> Attendee | None:
    email = normalize_email(str(prop).removeprefix("mailto:").removeprefix("MAILTO:"))
    if email is None:
        return None
    params = getattr(prop, "params", {})
    partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    return Attendee(
        email,
        str(params.get("CN", "")).strip()[:300],
        partstat if partstat in PARTSTATS else "NEEDS-ACTION",
        str(params.get("ROLE", "REQ-PARTICIPANT")).upper()[:20],
        str(params.get("CUTYPE", "INDIVIDUAL")).upper()[:20],
    )


def _attendees(comp: Any) -> tuple[Attendee, ...]:
    raw = comp.get("ATTENDEE")
    if raw is None:
        return ()
    seen: dict[str, Attendee] = {}
    for prop in raw if isinstance(raw, list) else [raw]:
        a = _person(prop)
        if a is not None:
            seen.setdefault(a.email, a)
    return tuple(seen.values())


def _span(comp: Any) -> tuple[datetime, datetime, bool, str | None]:
    start_prop = comp.get("DTSTART")
    if start_prop is None:
        raise InvalidInput("a VEVENT without DTSTART")
    start, all_day, tzid = _utc(start_prop.dt)
    end_prop = comp.get("DTEND")
    if end_prop is not None:
        end = _utc(end_prop.dt)[0]
    elif comp.get("DURATION") is not None:
        end = start + comp["DURATION"].dt
    else:
        end = start + (timedelta(days=1) if all_day else timedelta())
    return start, max(end, start), all_day, tzid


def parse_calendar(ics: str | bytes) -> icalendar.Calendar:
    try:
        return icalendar.Calendar.from_ical(ics)
    except ValueError as exc:
        raise InvalidInput(f"not an iCalendar object: {exc}") from None


def parse_event(ics: str | bytes, window: Window) -> ParsedEvent | None:
    """The event of one calendar object resource, its occurrences inside ``window``;
    None when it holds no VEVENT."""
    cal = parse_calendar(ics)
    events = [c for c in cal.walk("VEVENT")]
    if not events:
        return None
    master = next((c for c in events if c.get("RECURRENCE-ID") is None), events[0])
    start, end, all_day, tzid = _span(master)
    occurrences: list[Occurrence] = []
    try:
        expanded = recurring_ical_events.of(cal, components=["VEVENT"]).between(
            window.start, window.end
        )
    except Exception as exc:  # a broken RRULE must not stop the calendar
        raise InvalidInput(f"cannot expand the event's recurrence: {exc}") from None
    recurring = master.get("RRULE") is not None or master.get("RDATE") is not None
    for comp in expanded:
        o_start, o_end, o_all_day, o_tzid = _span(comp)
        rid = ""
        if recurring or comp.get("RECURRENCE-ID") is not None:
            rid = _rid(comp) or (o_start.date().isoformat() if o_all_day else o_start.isoformat())
        occurrences.append(
            Occurrence(
                rid, o_start, o_end, o_all_day, o_tzid, _status(comp), _text(comp, "SUMMARY")
            )
        )
    occurrences.sort(key=lambda o: (o.starts_at, o.recurrence_id))
    live = [o for o in occurrences if o.status != "cancelled"]
    first = (live or occurrences)[0] if occurrences else None
    rrule = master.get("RRULE")
    organizer = master.get("ORGANIZER")
    klass = _text(master, "CLASS").upper()
    seq = master.get("SEQUENCE")
    return ParsedEvent(
        uid=_text(master, "UID")[:500],
        recurrence_id=_rid(master),
        summary=_text(master, "SUMMARY"),
        description=_text(master, "DESCRIPTION"),
        location=_text(master, "LOCATION"),
        organizer=_person(organizer) if organizer is not None else None,
        status=_status(master),
        private=klass in ("PRIVATE", "CONFIDENTIAL"),
        starts_at=first.starts_at if first else start,
        ends_at=first.ends_at if first else end,
        all_day=all_day,
        tzid=tzid,
        rrule=rrule.to_ical().decode() if rrule is not None else None,
        sequence=int(seq) if seq is not None else 0,
        attendees=_attendees(master),
        occurrences=tuple(occurrences),
    )


# --- writing: meetings scheduled from the CRM ---------------------------------------------


@dataclass(frozen=True, slots=True)
class MeetingDraft:
    uid: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    organizer: Attendee
    attendees: tuple[Attendee, ...]
    description: str = ""
    location: str = ""
    sequence: int = 0
    status: str = "confirmed"
    #: the zone the meeting was scheduled in (kept as DTSTART's TZID)
    tzid: str | None = None


def meeting_calendar(draft: MeetingDraft, *, method: str | None = None) -> bytes:
    """A VCALENDAR with the meeting; ``method`` (REQUEST, CANCEL) makes it an iTIP body."""
    if draft.ends_at <= draft.starts_at:
        raise InvalidInput("a meeting must end after it starts")
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    if method:
        cal.add("method", method)
    ev = icalendar.Event()
    ev.add("uid", draft.uid)
    ev.add("dtstamp", datetime.now(UTC))
    start, end = draft.starts_at, draft.ends_at
    if draft.tzid:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(draft.tzid)
        start, end = start.astimezone(zone), end.astimezone(zone)
    ev.add("dtstart", start)
    ev.add("dtend", end)
    ev.add("summary", draft.summary)
    if draft.description:
        ev.add("description", draft.description)
    if draft.location:
        ev.add("location", draft.location)
    ev.add("sequence", draft.sequence)
    ev.add("status", draft.status.upper())
    org = icalendar.vCalAddress(f"mailto:{draft.organizer.email}")
    if draft.organizer.name:
        org.params["CN"] = draft.organizer.name
    ev.add("organizer", org)
    for a in draft.attendees:
        addr = icalendar.vCalAddress(f"mailto:{a.email}")
        if a.name:
            addr.params["CN"] = a.name
        addr.params["ROLE"] = a.role
        addr.params["PARTSTAT"] = a.partstat
        addr.params["RSVP"] = "TRUE"
        ev.add("attendee", addr)
    cal.add_component(ev)
    if draft.tzid:
        cal.add_missing_timezones()
    return bytes(cal.to_ical())


@dataclass(frozen=True, slots=True)
class Reply:
    """An attendee's answer (iTIP METHOD:REPLY)."""

    uid: str
    attendee: str
    partstat: str


def replies(ics: str | bytes) -> list[Reply]:
    """The attendee answers in an iMIP REPLY body (empty for any other method)."""
    cal = parse_calendar(ics)
    if _text(cal, "METHOD").upper() != "REPLY":
        return []
    out: list[Reply] = []
    for comp in cal.walk("VEVENT"):
        uid = _text(comp, "UID")
        for a in _attendees(comp):
            if uid and a.partstat in PARTSTATS:
                out.append(Reply(uid, a.email, a.partstat))
    return out


def sorted_attendees(attendees: Sequence[Attendee]) -> tuple[Attendee, ...]:
    return tuple(sorted(attendees, key=lambda a: a.email))
