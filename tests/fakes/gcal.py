"""A stateful fake of the Google Calendar API (v3), mounted in the fake Gmail app (one
Google API origin, the same bearer tokens).

The documented semantics crmail's calendar sync relies on:

- ``events.list`` with ``singleEvents=false`` (the only mode here; ``true`` is a 400 so
  a test never relies on expansion the fake does not do): masters with ``recurrence``,
  changed instances (``recurringEventId`` + ``originalStartTime``), cancelled instances
  (``status: cancelled``, the same keys) — listed even without ``showDeleted``, while
  deleted events are listed only with it;
- pages of ``maxResults`` (at most :attr:`FakeGoogleCalendar.page_size`) linked by
  ``nextPageToken``, ``nextSyncToken`` on the last page only;
  ``syncToken`` lists what changed since (deleted events as ``status: cancelled`` with
  only their ids), and is 410 GONE (``fullSyncRequired``) once invalidated
  (:meth:`FakeGoogleCalendar.invalidate_tokens`) or unknown; ``iCalUID`` lists one
  series' pieces (no sync token then);
- ``events.insert`` keeps the body's ``iCalUID`` (409 when taken), ``events.patch``
  honours ``If-Match`` (412), ``events.delete`` marks the event cancelled; with
  ``sendUpdates=all`` the invitations, updates and cancellations Google would mail are
  recorded in :attr:`FakeGoogleCalendar.sent`;
- every change gives the event a new ``etag``.

:func:`items_from_ics` turns a test's VCALENDAR into the items another Google client
would have made, so the calendar tests read the same for CalDAV and Google.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import icalendar
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.gmail import FakeGmail, GmailHTTPError, RequestRecord

PARTSTAT_TO_RESPONSE = {
    "NEEDS-ACTION": "needsAction",
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}


@dataclass
class FakeCalendar:
    id: str
    owner: str
    summary: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (change number, event id), in order
    changes: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Sent:
    """What the provider would have mailed: Google for ``sendUpdates=all``, Exchange by
    itself (the Graph fake records the same)."""

    kind: str  # "invitation" | "update" | "cancellation"
    event_id: str
    to: tuple[str, ...]


class FakeGoogleCalendar:
    def __init__(self, gmail: FakeGmail, page_size: int = 2) -> None:
        self.gmail = gmail
        #: the most items a page holds, whatever maxResults asks (pages get exercised)
        self.page_size = page_size
        self.calendars: dict[str, dict[str, FakeCalendar]] = {}  # address -> id -> calendar
        self.sent: list[Sent] = []
        self._numbers = itertools.count(1)
        self._valid_tokens: set[str] = set()
        base = "/calendar/v3"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/me/calendarList", _calendar_list),
            ("GET", "/calendars/{calendarId}/events", _list_events),
            ("POST", "/calendars/{calendarId}/events", _insert_event),
            ("GET", "/calendars/{calendarId}/events/{eventId}", _get_event),
            ("PATCH", "/calendars/{calendarId}/events/{eventId}", _patch_event),
            ("DELETE", "/calendars/{calendarId}/events/{eventId}", _delete_event),
        ]
        gmail.app.router.routes.extend(
            Route(base + path, self._endpoint(handler), methods=[method])
            for method, path, handler in routes
        )

    # --- test controls ----------------------------------------------------------------

    def add_calendar(self, address: str, cal_id: str = "primary", summary: str = "Work") -> None:
        with self.gmail.lock:
            self.calendars.setdefault(address, {})[cal_id] = FakeCalendar(cal_id, address, summary)

    def _change(self, cal: FakeCalendar, event: dict[str, Any]) -> dict[str, Any]:
        n = next(self._numbers)
        event["etag"] = f'"{n}"'
        event["updated"] = datetime.now(UTC).isoformat()
        cal.events[event["id"]] = event
        cal.changes.append((n, event["id"]))
        return event

    def put(self, address: str, item: dict[str, Any], cal_id: str = "primary") -> None:
        """Another client (Google's own app) creates or replaces an event."""
        with self.gmail.lock:
            self._change(self.calendars[address][cal_id], dict(item))

    def remove(self, address: str, event_id: str, cal_id: str = "primary") -> None:
        """Another client deletes an event (a series: with its instances)."""
        with self.gmail.lock:
            cal = self.calendars[address][cal_id]
            for ev in list(cal.events.values()):
                if ev["id"] == event_id or ev.get("recurringEventId") == event_id:
                    self._change(cal, _deleted(ev))

    def respond(
        self, address: str, event_id: str, attendee: str, status: str, cal_id: str = "primary"
    ) -> None:
        """An attendee answers the invitation (Google updates the organizer's copy)."""
        with self.gmail.lock:
            cal = self.calendars[address][cal_id]
            ev = dict(cal.events[event_id])
            ev["attendees"] = [
                {**a, "responseStatus": status} if a["email"] == attendee else a
                for a in ev.get("attendees", [])
            ]
            self._change(cal, ev)

    def invalidate_tokens(self) -> None:
        with self.gmail.lock:
            self._valid_tokens.clear()

    def events(self, address: str, cal_id: str = "primary") -> list[dict[str, Any]]:
        with self.gmail.lock:
            return [
                e
                for e in self.calendars[address][cal_id].events.values()
                if e.get("status") != "cancelled"
            ]

    # --- plumbing -----------------------------------------------------------------------

    def token_for(self, cal: FakeCalendar) -> str:
        mark = cal.changes[-1][0] if cal.changes else 0
        token = f"sync-{cal.owner}-{cal.id}-{mark}"
        self._valid_tokens.add(token)
        return token

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            self.gmail.requests.append(
                RequestRecord(request.method, request.url.path, request.url.query, False)
            )
            try:
                self.gmail._inject_fault(request.method, request.url.path)
                box = self.gmail._mailbox(request, "me")
                params = dict(request.path_params)
                cal = None
                if "calendarId" in params:
                    cal = self.calendars.get(box.address, {}).get(params.pop("calendarId"))
                    if cal is None:
                        raise GmailHTTPError(404, "Not Found")
                with self.gmail.lock:
                    body = await handler(self, box.address, cal, request, params)
            except GmailHTTPError as exc:
                return exc.response()
            if body is None:
                return Response(status_code=204)
            return JSONResponse(body)

        return endpoint


Handler = Callable[
    [FakeGoogleCalendar, str, "FakeCalendar | None", Request, dict[str, str]], Awaitable[Any]
]


def _deleted(ev: dict[str, Any]) -> dict[str, Any]:
    kept = {k: ev[k] for k in ("id", "recurringEventId", "originalStartTime") if k in ev}
    return {**kept, "status": "cancelled", "iCalUID": ev.get("iCalUID")}


def _listed(ev: dict[str, Any], show_deleted: bool) -> bool:
    if ev.get("status") != "cancelled":
        return True
    return show_deleted or bool(ev.get("recurringEventId"))


async def _calendar_list(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    items = [
        {
            "kind": "calendar#calendarListEntry",
            "id": c.id,
            "summary": c.summary,
            "accessRole": "owner",
        }
        for c in fake.calendars.get(address, {}).values()
    ]
    return {"kind": "calendar#calendarList", "items": items}


async def _list_events(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    assert cal is not None
    q = r.query_params
    if q.get("singleEvents", "false") != "false":
        raise GmailHTTPError(400, "the fake lists with singleEvents=false only")
    show_deleted = q.get("showDeleted") == "true"
    size = min(int(q.get("maxResults", "250")), 2500, fake.page_size)
    offset = int(q.get("pageToken") or 0)
    token = q.get("syncToken")
    if token is not None and q.get("iCalUID"):
        raise GmailHTTPError(400, "syncToken cannot be combined with iCalUID")
    if token is not None:
        if token not in fake._valid_tokens:
            raise GmailHTTPError(
                410, "Sync token is no longer valid, a full sync is required.", "fullSyncRequired"
            )
        since = int(token.rsplit("-", 1)[1])
        ids = list(dict.fromkeys(i for n, i in cal.changes if n > since))
        events = [cal.events[i] for i in ids]
    elif q.get("iCalUID"):
        events = [e for e in cal.events.values() if e.get("iCalUID") == q["iCalUID"]]
        events = [e for e in events if _listed(e, show_deleted)]
    else:
        events = [e for e in cal.events.values() if _listed(e, show_deleted)]
    page = events[offset : offset + size]
    out: dict[str, Any] = {"kind": "calendar#events", "items": page}
    if offset + size < len(events):
        out["nextPageToken"] = str(offset + size)
    elif not q.get("iCalUID"):
        out["nextSyncToken"] = fake.token_for(cal)
    return out


async def _get_event(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    assert cal is not None
    ev = cal.events.get(p["eventId"])
    if ev is None:
        raise GmailHTTPError(404, "Not Found")
    return ev


def _notify(fake: FakeGoogleCalendar, r: Request, kind: str, ev: dict[str, Any]) -> None:
    if r.query_params.get("sendUpdates") == "all":
        to = tuple(a["email"] for a in ev.get("attendees", []) if not a.get("organizer"))
        if to:
            fake.sent.append(Sent(kind, ev["id"], to))


async def _insert_event(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    assert cal is not None
    body = await r.json()
    if not body.get("start") or not body.get("end"):
        raise GmailHTTPError(400, "Missing time")
    event_id = f"ev{next(fake._numbers):06d}"
    uid = body.get("iCalUID") or f"{event_id}@google.com"
    if any(e.get("iCalUID") == uid for e in cal.events.values()):
        raise GmailHTTPError(409, "The requested identifier already exists.")
    ev = {
        **body,
        "kind": "calendar#event",
        "id": event_id,
        "iCalUID": uid,
        "status": body.get("status", "confirmed"),
        "organizer": {"email": address, "self": True},
        "attendees": [{"responseStatus": "needsAction", **a} for a in body.get("attendees", [])],
    }
    fake._change(cal, ev)
    _notify(fake, r, "invitation", ev)
    return ev


async def _patch_event(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    assert cal is not None
    ev = cal.events.get(p["eventId"])
    if ev is None or ev.get("status") == "cancelled":
        raise GmailHTTPError(404, "Not Found")
    match = r.headers.get("if-match")
    if match and match != ev["etag"]:
        raise GmailHTTPError(412, "Precondition Failed")
    body = await r.json()
    new = fake._change(cal, {**ev, **body, "id": ev["id"], "iCalUID": ev["iCalUID"]})
    _notify(fake, r, "update", new)
    return new


async def _delete_event(
    fake: FakeGoogleCalendar, address: str, cal: FakeCalendar | None, r: Request, p: dict[str, str]
) -> Any:
    assert cal is not None
    ev = cal.events.get(p["eventId"])
    if ev is None or ev.get("status") == "cancelled":
        raise GmailHTTPError(410, "Resource has been deleted", "deleted")
    _notify(fake, r, "cancellation", ev)
    fake._change(cal, _deleted(ev))
    return None


# --- a test's VCALENDAR as Google items ---------------------------------------------------


def _time(value: date | datetime) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    zone = getattr(value.tzinfo, "key", None) or "UTC"
    return {"dateTime": value.isoformat(), "timeZone": zone}


def _who(prop: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"email": str(prop).removeprefix("mailto:").removeprefix("MAILTO:")}
    if prop.params.get("CN"):
        out["displayName"] = str(prop.params["CN"])
    return out


def _event_id(uid: str) -> str:
    return "".join(c for c in uid.lower() if c in "abcdefghijklmnopqrstuv0123456789") or "x"


def items_from_ics(ics: str) -> list[dict[str, Any]]:
    """The Google items of a VCALENDAR (a master and its RECURRENCE-ID overrides)."""
    cal = icalendar.Calendar.from_ical(ics)
    out: list[dict[str, Any]] = []
    for comp in cal.walk("VEVENT"):
        uid = str(comp["UID"])
        master_id = _event_id(uid)
        item: dict[str, Any] = {"kind": "calendar#event", "iCalUID": uid}
        rid = comp.get("RECURRENCE-ID")
        if rid is not None:
            stamp = rid.dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            item["id"] = f"{master_id}_{stamp.lower()}"
            item["recurringEventId"] = master_id
            item["originalStartTime"] = _time(rid.dt)
        else:
            item["id"] = master_id
        status = str(comp.get("STATUS", "CONFIRMED")).lower()
        item["status"] = status
        if rid is not None and status == "cancelled":
            out.append(item)
            continue
        item["start"] = _time(comp["DTSTART"].dt)
        item["end"] = _time(comp["DTEND"].dt)
        item["summary"] = str(comp.get("SUMMARY", ""))
        if str(comp.get("CLASS", "")).upper() in ("PRIVATE", "CONFIDENTIAL"):
            item["visibility"] = "private"
        if comp.get("ORGANIZER") is not None:
            item["organizer"] = _who(comp["ORGANIZER"])
        raw = comp.get("ATTENDEE")
        attendees = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
        item["attendees"] = []
        for a in attendees:
            person = _who(a)
            person["responseStatus"] = PARTSTAT_TO_RESPONSE.get(
                str(a.params.get("PARTSTAT", "NEEDS-ACTION")), "needsAction"
            )
            if str(a.params.get("CUTYPE", "")).upper() in ("ROOM", "RESOURCE"):
                person["resource"] = True
            item["attendees"].append(person)
        lines = [
            comp.content_line(name, comp[name]).decode()
            if hasattr(comp.content_line(name, comp[name]), "decode")
            else str(comp.content_line(name, comp[name]))
            for name in ("RRULE", "RDATE", "EXDATE")
            if name in comp
        ]
        if lines:
            item["recurrence"] = lines
        out.append(item)
    return out
