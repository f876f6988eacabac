"""Microsoft Graph calendars (v1.0) in the fake Graph app (same tokens, same faults).

The documented semantics crmail's calendar sync relies on:

- ``GET /me/calendarView/delta?startDateTime&endDateTime``: the instances of the default
  calendar inside the window — single events, and each occurrence or exception of a
  series (``seriesMasterId``, ``originalStart``); a cancelled occurrence is not listed;
  pages of ``Prefer: odata.maxpagesize`` (:attr:`FakeGraphCalendar.page_size` by
  default) linked by ``@odata.nextLink`` ($skiptoken), the last page with
  ``@odata.deltaLink`` ($deltatoken); a delta link lists what changed since (a deleted
  instance as ``{"id", "@removed": {"reason": "deleted"}}``); an expired one
  (:meth:`FakeGraphCalendar.expire_delta`) answers 410 Gone (``syncStateNotFound``);
- ``POST /me/events`` gives the event Graph's own id, ``uid`` and ``iCalUId``;
  ``PATCH`` and ``POST /me/events/{id}/cancel`` (organizer only; the event leaves the
  calendar) and ``DELETE``; Exchange mails invitations, updates and cancellations
  itself: recorded in :attr:`FakeGraphCalendar.sent`;
- every change gives the event a new ``changeKey``.

:func:`items_from_ics` turns a test's VCALENDAR into the instances Graph would list.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import recurring_ical_events
from starlette.requests import Request
from starlette.routing import Route

from tests.fakes.gcal import Sent
from tests.fakes.graph import PREFIX, FakeGraph, GraphHTTPError, Mailbox

RESPONSES = {
    "NEEDS-ACTION": "none",
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentativelyAccepted",
}


@dataclass
class Calendar:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    changes: list[tuple[int, str]] = field(default_factory=list)


class FakeGraphCalendar:
    def __init__(self, graph: FakeGraph, page_size: int = 3) -> None:
        self.graph = graph
        self.page_size = page_size
        self.calendars: dict[str, Calendar] = {}
        self.sent: list[Sent] = []
        self._numbers = itertools.count(1)
        self._valid: set[str] = set()
        routes = [
            ("GET", "/me/calendarView/delta", _delta),
            ("POST", "/me/events", _create),
            ("GET", "/me/events/{eventId}", _get),
            ("PATCH", "/me/events/{eventId}", _patch),
            ("DELETE", "/me/events/{eventId}", _delete),
            ("POST", "/me/events/{eventId}/cancel", _cancel),
        ]
        graph.app.router.routes.extend(
            Route(PREFIX + path, graph._endpoint(self._bound(handler)), methods=[method])
            for method, path, handler in routes
        )

    def _bound(self, handler: Any) -> Any:
        async def call(graph: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
            with graph.lock:
                cal = self.calendars.setdefault(box.address, Calendar())
            body = await r.json() if r.method in ("POST", "PATCH") and await r.body() else {}
            with graph.lock:
                return handler(self, box, cal, r, p, body)

        return call

    # --- test controls ----------------------------------------------------------------

    def _change(self, cal: Calendar, item: dict[str, Any]) -> dict[str, Any]:
        n = next(self._numbers)
        item["changeKey"] = f"ck{n}"
        item["lastModifiedDateTime"] = datetime.now(UTC).isoformat()
        cal.events[item["id"]] = item
        cal.removed.discard(item["id"])
        cal.changes.append((n, item["id"]))
        return item

    def _remove(self, cal: Calendar, event_id: str) -> None:
        cal.events.pop(event_id, None)
        cal.removed.add(event_id)
        cal.changes.append((next(self._numbers), event_id))

    def put(self, address: str, item: dict[str, Any]) -> None:
        """Another client (Outlook) creates or changes an event instance."""
        with self.graph.lock:
            self._change(self.calendars.setdefault(address, Calendar()), dict(item))

    def remove_uid(self, address: str, uid: str) -> None:
        """Another client deletes an event (a series: all its instances)."""
        with self.graph.lock:
            cal = self.calendars.setdefault(address, Calendar())
            for ident in [i for i, e in cal.events.items() if e.get("uid") == uid]:
                self._remove(cal, ident)

    def respond(self, address: str, event_id: str, attendee: str, response: str) -> None:
        with self.graph.lock:
            cal = self.calendars[address]
            ev = dict(cal.events[event_id])
            ev["attendees"] = [
                {**a, "status": {"response": response, "time": datetime.now(UTC).isoformat()}}
                if a["emailAddress"]["address"] == attendee
                else a
                for a in ev.get("attendees", [])
            ]
            self._change(cal, ev)

    def expire_delta(self) -> None:
        with self.graph.lock:
            self._valid.clear()

    def events(self, address: str) -> list[dict[str, Any]]:
        with self.graph.lock:
            return list(self.calendars.get(address, Calendar()).events.values())

    def _delta_link(self, r: Request, address: str, cal: Calendar) -> str:
        mark = cal.changes[-1][0] if cal.changes else 0
        token = f"{uuid.uuid4().hex}.{mark}"
        self._valid.add(token)
        base = str(r.base_url).rstrip("/")
        return f"{base}{PREFIX}/me/calendarView/delta?$deltatoken={token}"


def _page_size(fake: FakeGraphCalendar, r: Request) -> int:
    for part in r.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "odata.maxpagesize" and value.isdigit():
            return min(int(value), fake.page_size)
    return fake.page_size


def _in_window(item: dict[str, Any], start: datetime, end: datetime) -> bool:
    s = datetime.fromisoformat(item["start"]["dateTime"]).replace(tzinfo=UTC)
    e = datetime.fromisoformat(item["end"]["dateTime"]).replace(tzinfo=UTC)
    if item["start"].get("timeZone") not in (None, "UTC"):
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(item["start"]["timeZone"])
        s = s.replace(tzinfo=zone)
        e = e.replace(tzinfo=zone)
    return s < end and e > start


def _delta(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    q = r.query_params
    size = _page_size(fake, r)
    if "$deltatoken" in q:
        token = q["$deltatoken"]
        if token not in fake._valid:
            raise GraphHTTPError(410, "syncStateNotFound", "The sync state is not found.")
        since = int(token.rsplit(".", 1)[1])
        ids = list(dict.fromkeys(i for n, i in cal.changes if n > since))
        items = [cal.events.get(i, {"id": i, "@removed": {"reason": "deleted"}}) for i in ids]
        return {"value": items, "@odata.deltaLink": fake._delta_link(r, box.address, cal)}
    if "$skiptoken" in q:
        offset, _, rest = q["$skiptoken"].partition(":")
        start_s, end_s = rest.split("|")
    else:
        if "startDateTime" not in q or "endDateTime" not in q:
            raise GraphHTTPError(400, "ErrorInvalidParameter", "startDateTime and endDateTime")
        offset, start_s, end_s = "0", q["startDateTime"], q["endDateTime"]
    start = datetime.fromisoformat(start_s.replace("Z", "+00:00"))
    end = datetime.fromisoformat(end_s.replace("Z", "+00:00"))
    listed = [e for e in cal.events.values() if _in_window(e, start, end)]
    at = int(offset)
    page = listed[at : at + size]
    out: dict[str, Any] = {"value": page}
    base = str(r.base_url).rstrip("/")
    if at + size < len(listed):
        out["@odata.nextLink"] = (
            f"{base}{PREFIX}/me/calendarView/delta?$skiptoken={at + size}:{start_s}|{end_s}"
        )
    else:
        out["@odata.deltaLink"] = fake._delta_link(r, box.address, cal)
    return out


def _notify(fake: FakeGraphCalendar, kind: str, ev: dict[str, Any]) -> None:
    to = tuple(a["emailAddress"]["address"] for a in ev.get("attendees", []))
    if to:
        fake.sent.append(Sent(kind, ev["id"], to))


def _create(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    if not body.get("start") or not body.get("end") or not body.get("subject"):
        raise GraphHTTPError(400, "ErrorInvalidRequest", "start, end and subject are needed")
    tx = body.get("transactionId")
    for ev in cal.events.values():
        if tx and ev.get("transactionId") == tx:
            return ev
    n = next(fake._numbers)
    uid = f"040000008200E00074C5B7101A82E008{n:016X}"
    ev = {
        **body,
        "id": f"AAMk{n:08d}",
        "uid": uid,
        "iCalUId": uid,
        "type": "singleInstance",
        "isCancelled": False,
        "organizer": {"emailAddress": {"address": box.address, "name": ""}},
        "attendees": [
            {**a, "status": {"response": "none", "time": "0001-01-01T00:00:00Z"}}
            for a in body.get("attendees", [])
        ],
    }
    fake._change(cal, ev)
    _notify(fake, "invitation", ev)
    return ev


def _event(cal: Calendar, p: dict[str, str]) -> dict[str, Any]:
    ev = cal.events.get(p["eventId"])
    if ev is None:
        raise GraphHTTPError(404, "ErrorItemNotFound", "The specified object was not found.")
    return ev


def _get(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    return _event(cal, p)


def _patch(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    ev = _event(cal, p)
    new = fake._change(cal, {**ev, **body, "id": ev["id"], "uid": ev["uid"]})
    if "attendees" in body:
        new["attendees"] = [
            {**a, "status": {"response": "none", "time": "0001-01-01T00:00:00Z"}}
            for a in body["attendees"]
        ]
    _notify(fake, "update", new)
    return new


def _cancel(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    ev = _event(cal, p)
    if ev["organizer"]["emailAddress"]["address"] != box.address:
        raise GraphHTTPError(400, "ErrorAccessDenied", "Only the organizer can cancel.")
    _notify(fake, "cancellation", ev)
    fake._remove(cal, ev["id"])
    return None


def _delete(
    fake: FakeGraphCalendar, box: Mailbox, cal: Calendar, r: Request, p: dict[str, str], body: Any
) -> Any:
    _event(cal, p)
    fake._remove(cal, p["eventId"])
    return None


# --- a test's VCALENDAR as the instances Graph lists ----------------------------------------


def _time(value: date | datetime) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"dateTime": f"{value.isoformat()}T00:00:00.0000000", "timeZone": "UTC"}
    zone = getattr(value.tzinfo, "key", None) or "UTC"
    local = value if zone != "UTC" else value.astimezone(UTC)
    return {"dateTime": local.replace(tzinfo=None).isoformat(), "timeZone": zone}


def _who(prop: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "address": str(prop).removeprefix("mailto:").removeprefix("MAILTO:"),
    }
    if prop.params.get("CN"):
        out["name"] = str(prop.params["CN"])
    return out


def _item(comp: Any, ident: str, uid: str) -> dict[str, Any]:
    start, end = comp["DTSTART"].dt, comp["DTEND"].dt
    item: dict[str, Any] = {
        "id": ident,
        "uid": uid,
        "iCalUId": f"{uid}-{ident}",
        "type": "singleInstance",
        "subject": str(comp.get("SUMMARY", "")),
        "start": _time(start),
        "end": _time(end),
        "isAllDay": not isinstance(start, datetime),
        "isCancelled": False,
        "sensitivity": "private"
        if str(comp.get("CLASS", "")).upper() in ("PRIVATE", "CONFIDENTIAL")
        else "normal",
        "attendees": [],
    }
    if comp.get("ORGANIZER") is not None:
        item["organizer"] = {"emailAddress": _who(comp["ORGANIZER"])}
    raw = comp.get("ATTENDEE")
    for a in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
        cutype = str(a.params.get("CUTYPE", "")).upper()
        item["attendees"].append(
            {
                "emailAddress": _who(a),
                "type": "resource" if cutype in ("ROOM", "RESOURCE") else "required",
                "status": {"response": RESPONSES.get(str(a.params.get("PARTSTAT")), "none")},
            }
        )
    return item


def items_from_ics(ics: str, around: datetime) -> list[dict[str, Any]]:
    """The instances Graph lists of a VCALENDAR within a wide window around ``around``
    (cancelled occurrences and EXDATEs left out, as Graph does)."""
    cal = icalendar.Calendar.from_ical(ics)
    masters = [c for c in cal.walk("VEVENT") if c.get("RECURRENCE-ID") is None]
    uid = str((masters or list(cal.walk("VEVENT")))[0]["UID"])
    base = "".join(ch for ch in uid if ch.isalnum()) or "x"
    if not masters or (masters[0].get("RRULE") is None and masters[0].get("RDATE") is None):
        return [_item(masters[0], base, uid)] if masters else []
    out = []
    for comp in recurring_ical_events.of(cal).between(
        around - timedelta(days=400), around + timedelta(days=400)
    ):
        if str(comp.get("STATUS", "")).upper() == "CANCELLED":
            continue
        rid = comp.get("RECURRENCE-ID")
        original = rid.dt if rid is not None else comp["DTSTART"].dt
        stamp = original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        item = _item(comp, f"{base}_{stamp}", uid)
        series = _item(masters[0], base, uid)
        # Every instance carries the series' organizer and attendees.
        item["attendees"] = item["attendees"] or series["attendees"]
        item.setdefault("organizer", series.get("organizer"))
        item["seriesMasterId"] = base
        item["type"] = (
            "exception" if rid is not None and rid.dt != comp["DTSTART"].dt else "occurrence"
        )
        item["originalStart"] = original.astimezone(UTC).isoformat().replace("+00:00", "Z")
        out.append(item)
    return out
