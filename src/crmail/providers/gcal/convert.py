"""Google Calendar events (API v3 JSON) as iCalendar, and meetings as event bodies.

A series is listed by ``events.list(singleEvents=false)`` as its master (``recurrence``:
RRULE, RDATE, EXDATE lines), its changed instances (``recurringEventId`` +
``originalStartTime``) and its cancelled instances (``status: cancelled``, the same two
keys). They become one VCALENDAR: the master VEVENT and one overriding VEVENT per
instance (RECURRENCE-ID), so crmail's own expander treats them like a CalDAV series.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from crmail.domain.ical import PRODID, parse_calendar
from crmail.errors import InvalidInput

#: Google's attendee responseStatus and iCalendar's PARTSTAT
RESPONSE_TO_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}
PARTSTAT_TO_RESPONSE = {v: k for k, v in RESPONSE_TO_PARTSTAT.items()}


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def when(value: Mapping[str, Any]) -> date | datetime:
    """A Google ``start``/``end``/``originalStartTime`` as a date or an aware datetime in
    its ``timeZone`` (so the TZID is kept)."""
    if value.get("date"):
        return date.fromisoformat(str(value["date"]))
    raw = value.get("dateTime")
    if not raw:
        raise InvalidInput("a Google event time without date or dateTime")
    moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    zone = _zone(value.get("timeZone"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone) if zone else moment
    return moment.astimezone(zone) if zone else moment


def _person(prop: str, person: Mapping[str, Any]) -> icalendar.vCalAddress:
    addr = icalendar.vCalAddress(f"mailto:{person.get('email', '')}")
    if person.get("displayName"):
        addr.params["CN"] = str(person["displayName"])
    if prop == "attendee":
        addr.params["PARTSTAT"] = RESPONSE_TO_PARTSTAT.get(
            str(person.get("responseStatus", "")), "NEEDS-ACTION"
        )
        addr.params["ROLE"] = "OPT-PARTICIPANT" if person.get("optional") else "REQ-PARTICIPANT"
        if person.get("resource"):
            addr.params["CUTYPE"] = "RESOURCE"
    return addr


def _vevent(item: Mapping[str, Any], uid: str, master: Mapping[str, Any] | None) -> icalendar.Event:
    ev = icalendar.Event()
    ev.add("uid", uid)
    ev.add("dtstamp", datetime.fromisoformat("2000-01-01T00:00:00+00:00"))
    if master is not None:
        original = when(item["originalStartTime"])
        ev.add("recurrence-id", original)
    if item.get("start"):
        start, end = when(item["start"]), when(item.get("end") or item["start"])
    else:  # a cancelled instance says only which one: the series' length
        assert master is not None
        start = when(item["originalStartTime"])
        end = start + (when(master["end"]) - when(master["start"]))
    ev.add("dtstart", start)
    ev.add("dtend", end)
    source = item if item.get("start") else (master or item)
    for key, prop in (("summary", "summary"), ("description", "description")):
        if source.get(key):
            ev.add(prop, str(source[key]))
    if source.get("location"):
        ev.add("location", str(source["location"]))
    ev.add("status", str(item.get("status") or "confirmed").upper())
    ev.add("sequence", int(source.get("sequence") or 0))
    if source.get("visibility") in ("private", "confidential"):
        ev.add("class", "PRIVATE")
    if source.get("organizer", {}).get("email"):
        ev.add("organizer", _person("organizer", source["organizer"]))
    for a in source.get("attendees") or ():
        if a.get("email"):
            ev.add("attendee", _person("attendee", a))
    if master is None and item.get("recurrence"):
        lines = "\r\n".join(str(line) for line in item["recurrence"])
        rules = icalendar.Event.from_ical(f"BEGIN:VEVENT\r\n{lines}\r\nEND:VEVENT\r\n")
        for name, value in rules.property_items(recursive=False):
            if name in ("RRULE", "RDATE", "EXDATE", "EXRULE"):
                ev.add(name, value)
    return ev


def series_ics(items: Sequence[Mapping[str, Any]]) -> str:
    """One VCALENDAR of a series' pieces (the master first), or of a single event."""
    master = next((i for i in items if not i.get("recurringEventId")), None)
    uid = str((master or items[0]).get("iCalUID") or (master or items[0])["id"])
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    if master is None:  # an instance whose series is not visible: an event of its own
        cal.add_component(_vevent(items[0], uid, None))
    else:
        cal.add_component(_vevent(master, uid, None))
        for item in items:
            if item is not master:
                cal.add_component(_vevent(item, uid, master))
    with contextlib.suppress(Exception):  # an unknown zone keeps its TZID unresolved
        cal.add_missing_timezones()
    return str(cal.to_ical().decode())


def _google_time(value: date | datetime, tzid: str | None) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    out = {"dateTime": value.isoformat()}
    if tzid:
        out["timeZone"] = tzid
    return out


def event_body(ics: str) -> dict[str, Any]:
    """The Google event of a meeting crmail wrote as a VCALENDAR (one VEVENT)."""
    cal = parse_calendar(ics)
    comp = next(iter(cal.walk("VEVENT")), None)
    if comp is None:
        raise InvalidInput("a meeting without a VEVENT")
    start_prop: Any = comp["DTSTART"]
    end_prop: Any = comp["DTEND"]
    start, end = start_prop.dt, end_prop.dt
    tzid = start_prop.params.get("TZID")
    body: dict[str, Any] = {
        "iCalUID": str(comp["UID"]),
        "summary": str(comp.get("SUMMARY", "")),
        "start": _google_time(start, tzid),
        "end": _google_time(end, tzid),
        "status": str(comp.get("STATUS", "CONFIRMED")).lower(),
        "sequence": int(comp.get("SEQUENCE", 0)),
    }
    for name, key in (("DESCRIPTION", "description"), ("LOCATION", "location")):
        if comp.get(name):
            body[key] = str(comp[name])
    raw = comp.get("ATTENDEE")
    attendees = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
    body["attendees"] = [
        {
            "email": str(a).removeprefix("mailto:").removeprefix("MAILTO:"),
            **({"displayName": str(a.params["CN"])} if a.params.get("CN") else {}),
            "responseStatus": PARTSTAT_TO_RESPONSE.get(
                str(a.params.get("PARTSTAT", "NEEDS-ACTION")), "needsAction"
            ),
        }
        for a in attendees
    ]
    return body
