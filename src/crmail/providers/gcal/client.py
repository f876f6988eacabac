"""Google Calendar API v3 as a calendar port (:mod:`crmail.providers.calendar_port`).

Events are listed with ``singleEvents=false``: a series arrives once (its master with
``recurrence``, plus its changed and cancelled instances) and is expanded by crmail's
own expander within the window, like a CalDAV series — one stored event per series, and
the same rules for every provider. ``singleEvents=true`` would hand out every instance
as its own event (a weekly series: 65 of them in the window) and lose the series.

- ``href``: the series' (or single event's) Google id; its etag the joined etags of
  its pieces, so a full listing after a forgotten token fetches nothing unchanged;
- incremental rounds use ``syncToken`` (``nextPageToken`` pages, ``nextSyncToken`` at
  the end); 410 GONE is :class:`SyncTokenInvalid` (the round lists everything again);
  ``status: cancelled`` on a series or single event is a deletion;
- a changed series is read again whole: the master, then its pieces by ``iCalUID``;
- only the primary calendar is synced (see :meth:`GoogleCalendar.calendars`);
- writes use ``sendUpdates=all``, so Google sends the invitations and cancellations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack
from urllib.parse import quote

from crmail.errors import ProviderError
from crmail.providers.calendar_port import (
    CalendarScopeMissing,
    Listing,
    RemoteCalendar,
    Resource,
    Saved,
    SyncTokenInvalid,
)
from crmail.providers.gcal.convert import event_body, series_ics
from crmail.providers.gmail.errors import GmailFailure, classify
from crmail.providers.http import (
    AccessTokenSource,
    ApiClient,
    AuthorizedHttp,
    ErrorRules,
    HttpOptions,
    NotFoundFactory,
)
from crmail.providers.http_errors import ProviderWords, final_error

DEFAULT_BASE_URL = "https://www.googleapis.com"
PRIMARY = "primary"
PAGE_SIZE = 250
_SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})


class _Gone(ProviderError):
    code = "event_gone"


def _gone(message: str) -> ProviderError:
    return _Gone(message or "the event is gone")


WORDS = ProviderWords(
    company="Google",
    service="Google Calendar",
    speaker="Google Calendar",
    scope_refused="crmail was not given access to this Google account's calendar.",
    scope_hint="Reconnect the account with Google and allow the calendar permission.",
)


def to_error(failure: GmailFailure, not_found: NotFoundFactory | None = None) -> ProviderError:
    if failure.status == 410:
        return SyncTokenInvalid("Google Calendar asks for a full sync (the sync token expired)")
    if failure.status == 403 and _SCOPE_REASONS.intersection(failure.reasons):
        return CalendarScopeMissing(WORDS.scope_refused, hint=WORDS.scope_hint)
    return final_error(
        failure,
        WORDS,
        throttled=classify(failure).name == "THROTTLED",
        scope_missing=False,
        not_found=not_found,
    )


RULES: ErrorRules[GmailFailure] = ErrorRules(
    service="Google Calendar",
    read=GmailFailure.read,
    classify=classify,
    to_error=to_error,
    unreachable="crmail could not reach Google Calendar; sync goes on by itself later.",
)


def _series_of(item: Mapping[str, Any]) -> str:
    return str(item.get("recurringEventId") or item["id"])


def _etag(pieces: Sequence[Mapping[str, Any]]) -> str:
    return "|".join(sorted(str(p.get("etag", "")) for p in pieces))[:200]


class GoogleCalendar(ApiClient):
    """One Google account's calendars (``calendar_url`` is a calendar id)."""

    sends_invitations = True

    def __init__(
        self,
        access_token: AccessTokenSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        **options: Unpack[HttpOptions],
    ) -> None:
        self._http = AuthorizedHttp(
            RULES, access_token, base_url=base_url.rstrip("/") + "/calendar/v3", **options
        )
        #: the pieces of each series seen by the last full listing (fetch reuses them)
        self._listed: dict[str, dict[str, list[dict[str, Any]]]] = {}

    async def close(self) -> None:
        await self.aclose()

    @staticmethod
    def _events(calendar_url: str) -> str:
        return f"/calendars/{quote(calendar_url, safe='@')}/events"

    async def calendars(self) -> list[RemoteCalendar]:
        """The primary calendar: the ``calendar.events`` scope crmail asks for (least
        privilege) reaches events, not the calendar list; meetings live there."""
        return [RemoteCalendar(PRIMARY, "Google Calendar", None)]

    async def changes(self, calendar_url: str, token: str | None, ctag: str | None) -> Listing:
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            params = [
                ("singleEvents", "false"),
                ("showDeleted", "true"),
                ("maxResults", str(PAGE_SIZE)),
            ]
            if token:
                params.append(("syncToken", token))
            if page:
                params.append(("pageToken", page))
            data = await self._http.json("GET", self._events(calendar_url), params=params)
            items.extend(data.get("items") or ())
            page = data.get("nextPageToken")
            if not page:
                next_token = data.get("nextSyncToken")
                break
        if token is None:
            series: dict[str, list[dict[str, Any]]] = {}
            for item in items:
                if item.get("status") == "cancelled" and not item.get("recurringEventId"):
                    continue  # deleted
                series.setdefault(_series_of(item), []).append(item)
            self._listed[calendar_url] = series
            etags: dict[str, str | None] = {h: _etag(p) for h, p in series.items()}
            return Listing(next_token, etags, (), full=True)
        deleted = {
            str(i["id"])
            for i in items
            if i.get("status") == "cancelled" and not i.get("recurringEventId")
        }
        changed: dict[str, str | None] = {
            _series_of(i): None for i in items if _series_of(i) not in deleted
        }
        return Listing(next_token, changed, tuple(sorted(deleted)))

    async def _series(self, calendar_url: str, href: str) -> list[dict[str, Any]]:
        path = self._events(calendar_url)
        try:
            master = await self._http.json("GET", f"{path}/{quote(href, safe='')}", not_found=_gone)
        except _Gone:  # deleted meanwhile
            return []
        if master.get("status") == "cancelled":
            return []
        if not master.get("recurrence"):
            return [master]
        pieces = [master]
        page: str | None = None
        while True:
            params = [
                ("iCalUID", str(master.get("iCalUID") or "")),
                ("singleEvents", "false"),
                ("showDeleted", "true"),
            ] + ([("pageToken", page)] if page else [])
            data = await self._http.json("GET", path, params=params)
            pieces.extend(i for i in data.get("items") or () if i.get("recurringEventId") == href)
            page = data.get("nextPageToken")
            if not page:
                return pieces

    async def fetch(self, calendar_url: str, hrefs: Sequence[str]) -> list[Resource]:
        listed = self._listed.get(calendar_url, {})
        out: list[Resource] = []
        for href in hrefs:
            pieces = listed.get(href) or await self._series(calendar_url, href)
            if pieces:
                out.append(Resource(href, _etag(pieces), series_ics(pieces)))
        return out

    async def put(
        self, calendar_url: str, href: str | None, uid: str, ics: str, etag: str | None
    ) -> Saved:
        body = event_body(ics)
        path = self._events(calendar_url)
        notify = [("sendUpdates", "all")]
        if href is None:
            saved = await self._http.json("POST", path, params=notify, json=body)
        elif body["status"] == "cancelled":
            # Google's cancel is a delete; it sends the attendees the cancellation.
            await self.delete(calendar_url, href)
            return Saved(href, None)
        else:
            body.pop("iCalUID", None)
            single = etag if etag and "|" not in etag else None
            saved = await self._http.json(
                "PATCH",
                f"{path}/{quote(href, safe='')}",
                params=notify,
                json=body,
                headers={"If-Match": single} if single else None,
            )
        return Saved(str(saved["id"]), _etag([saved]))

    async def delete(self, calendar_url: str, href: str) -> None:
        await self._http.send(
            "DELETE",
            f"{self._events(calendar_url)}/{quote(href, safe='')}",
            params=[("sendUpdates", "all")],
        )
