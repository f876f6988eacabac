"""Microsoft Graph events (v1.0 JSON) as iCalendar, and meetings as event bodies.

``calendarView/delta`` hands out instances: single events, and each occurrence or
exception of a series inside the window. Each becomes a VCALENDAR of its own, keyed by
the series' ``uid`` (the same for a series master and all its instances) and, for an
instance of a series, a RECURRENCE-ID of its original start: stored like a CalDAV
server's lone instances. Graph lists no cancelled occurrences: one deleted from a
series leaves as an ``@removed`` item, and its stored instance stays, cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from crmail.domain.ical import PRODID, parse_calendar
from crmail.errors import InvalidInput

#: Graph's attendee ``status.response`` and iCalendar's PARTSTAT
RESPONSE_TO_PARTSTAT = {
    "none": "NEEDS-ACTION",
    "notResponded": "NEEDS-ACTION",
    "organizer": "ACCEPTED",
    "accepted": "ACCEPTED",
    "tentativelyAccepted": "TENTATIVE",
    "declined": "DECLINED",
}


def when(value: Mapping[str, Any], *, all_day: bool = False) -> Any:
    """A Graph ``dateTimeTimeZone`` ({dateTime, timeZone}) as an aware datetime in its
    zone (IANA names; Windows names and "UTC" read as UTC), or a date when all-day."""
    raw = str(value.get("dateTime") or "")
    if not raw:
        raise InvalidInput("a Graph event time without dateTime")
    moment = datetime.fromisoformat(raw.replace("Z", "")[:26])
    if all_day:
        return moment.date()
    zone: Any = UTC
    with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
        name = str(value.get("timeZone") or "UTC")
        zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def series_of(item: Mapping[str, Any]) -> str:
    return str(item.get("seriesMasterId") or item["id"])


def event_ics(item: Mapping[str, Any]) -> str:
    """One VCALENDAR of a Graph event instance."""
    all_day = bool(item.get("isAllDay"))
    ev = icalendar.Event()
    ev.add("uid", str(item.get("uid") or item.get("iCalUId") or item["id"]))
    ev.add("dtstamp", datetime(2000, 1, 1, tzinfo=UTC))
    if item.get("seriesMasterId") and item.get("originalStart"):
        original = datetime.fromisoformat(str(item["originalStart"]).replace("Z", "+00:00"))
        ev.add("recurrence-id", original.date() if all_day else original)
    ev.add("dtstart", when(item["start"], all_day=all_day))
    ev.add("dtend", when(item["end"], all_day=all_day))
    if item.get("subject"):
        ev.add("summary", str(item["subject"]))
    body = item.get("body") or {}
    if body.get("contentType") == "text" and body.get("content"):
        ev.add("description", str(body["content"]))
    if (item.get("location") or {}).get("displayName"):
        ev.add("location", str(item["location"]["displayName"]))
    ev.add("status", "CANCELLED" if item.get("isCancelled") else "CONFIRMED")
    if item.get("sensitivity") in ("private", "confidential"):
        ev.add("class", "PRIVATE")
    organizer = ((item.get("organizer") or {}).get("emailAddress") or {}).get("address")
    if organizer:
        addr = icalendar.vCalAddress(f"mailto:{organizer}")
        name = item["organizer"]["emailAddress"].get("name")
        if name:
            addr.params["CN"] = str(name)
        ev.add("organizer", addr)
    for a in item.get("attendees") or ():
        who = a.get("emailAddress") or {}
        if not who.get("address"):
            continue
        addr = icalendar.vCalAddress(f"mailto:{who['address']}")
        if who.get("name"):
            addr.params["CN"] = str(who["name"])
        response = str((a.get("status") or {}).get("response") or "none")
        addr.params["PARTSTAT"] = RESPONSE_TO_PARTSTAT.get(response, "NEEDS-ACTION")
        kind = a.get("type")
        addr.params["ROLE"] = "OPT-PARTICIPANT" if kind == "optional" else "REQ-PARTICIPANT"
        if kind == "resource":
            addr.params["CUTYPE"] = "RESOURCE"
        ev.add("attendee", addr)
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add_component(ev)
    with contextlib.suppress(Exception):  # an unknown zone keeps its TZID unresolved
        cal.add_missing_timezones()
    return str(cal.to_ical().decode())


def _graph_time(value: Any, tzid: str | None) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"dateTime": f"{value.isoformat()}T00:00:00", "timeZone": "UTC"}
    zone = tzid or "UTC"
    local = value.astimezone(ZoneInfo(zone)) if tzid else value.astimezone(UTC)
    return {"dateTime": local.replace(tzinfo=None).isoformat(), "timeZone": zone}


def event_body(ics: str) -> dict[str, Any]:
    """The Graph event of a meeting crmail wrote as a VCALENDAR (one VEVENT)."""
    comp = next(iter(parse_calendar(ics).walk("VEVENT")), None)
    if comp is None:
        raise InvalidInput("a meeting without a VEVENT")
    start_prop: Any = comp["DTSTART"]
    end_prop: Any = comp["DTEND"]
    tzid = start_prop.params.get("TZID")
    body: dict[str, Any] = {
        "subject": str(comp.get("SUMMARY", "")),
        "start": _graph_time(start_prop.dt, tzid),
        "end": _graph_time(end_prop.dt, tzid),
        "isAllDay": not isinstance(start_prop.dt, datetime),
    }
    if comp.get("DESCRIPTION"):
        body["body"] = {"contentType": "text", "content": str(comp["DESCRIPTION"])}
    if comp.get("LOCATION"):
        body["location"] = {"displayName": str(comp["LOCATION"])}
    raw = comp.get("ATTENDEE")
    attendees = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
    body["attendees"] = [
        {
            "emailAddress": {
                "address": str(a).removeprefix("mailto:").removeprefix("MAILTO:"),
                **({"name": str(a.params["CN"])} if a.params.get("CN") else {}),
            },
            "type": "optional" if a.params.get("ROLE") == "OPT-PARTICIPANT" else "required",
        }
        for a in attendees
    ]
    return body
