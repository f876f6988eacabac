"""Microsoft Graph calendars (v1.0) as a calendar port (:mod:`crmail.providers.calendar_port`).

- the user's default calendar, read by ``/me/calendarView/delta`` within the sync window
  (``@odata.nextLink`` pages, the ``@odata.deltaLink`` kept as the token); every item is
  an instance (see :mod:`.convert`), its href the item's id and its etag the
  ``changeKey``; ``@removed`` items are deletions; 410 Gone (or ``syncStateNotFound``)
  is :class:`SyncTokenInvalid`: the window is listed again;
- meetings: ``POST /me/events`` (``transactionId`` = crmail's UID, so a retried create
  makes one event), ``PATCH /me/events/{id}``, ``POST /me/events/{id}/cancel``:
  Exchange sends the invitations, updates and cancellations itself. A new event gets
  Graph's own UID: the saved event is handed back as iCalendar to be stored as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack
from urllib.parse import quote

from crmail.domain.ical import Window
from crmail.errors import ProviderError
from crmail.providers.calendar_port import (
    CalendarScopeMissing,
    Listing,
    RemoteCalendar,
    Resource,
    Saved,
    SyncTokenInvalid,
)
from crmail.providers.graph.errors import GraphFailure, classify
from crmail.providers.graph.errors import to_error as mail_error
from crmail.providers.graphcal.convert import event_body, event_ics
from crmail.providers.http import (
    AccessTokenSource,
    ApiClient,
    AuthorizedHttp,
    ErrorRules,
    HttpOptions,
    NotFoundFactory,
)

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_CALENDAR = "default"
PAGE_SIZE = 200


def to_error(failure: GraphFailure, not_found: NotFoundFactory | None = None) -> ProviderError:
    if failure.needs_resync:
        return SyncTokenInvalid("Microsoft Graph asks for a full sync of the calendar")
    if failure.status == 403:
        return CalendarScopeMissing(
            "crmail was not given access to this Microsoft account's calendar.",
            hint="Reconnect the account with Microsoft and allow the calendar permission.",
        )
    return mail_error(failure, not_found)


RULES: ErrorRules[GraphFailure] = ErrorRules(
    service="Microsoft Graph",
    read=GraphFailure.read,
    classify=classify,
    to_error=to_error,
    unreachable="crmail could not reach Microsoft Graph; sync goes on by itself later.",
)


def _stamp(when: Any) -> str:
    return str(when.strftime("%Y-%m-%dT%H:%M:%SZ"))


class GraphCalendar(ApiClient):
    """One Microsoft account's default calendar."""

    sends_invitations = True

    def __init__(
        self,
        access_token: AccessTokenSource,
        window: Window,
        *,
        base_url: str = DEFAULT_BASE_URL,
        **options: Unpack[HttpOptions],
    ) -> None:
        self._http = AuthorizedHttp(
            RULES,
            access_token,
            base_url=base_url,
            headers={"Prefer": f'IdType="ImmutableId", odata.maxpagesize={PAGE_SIZE}'},
            **options,
        )
        self.window = window
        #: items of the last listing by id (fetch reads them: delta items are whole)
        self._items: dict[str, dict[str, Any]] = {}

    async def close(self) -> None:
        await self.aclose()

    async def calendars(self) -> list[RemoteCalendar]:
        """The default calendar: where Outlook puts meetings and invitations."""
        return [RemoteCalendar(DEFAULT_CALENDAR, "Outlook calendar", None)]

    async def changes(self, calendar_url: str, token: str | None, ctag: str | None) -> Listing:
        if token:
            url, params = token, []
        else:
            url = "/me/calendarView/delta"
            params = [
                ("startDateTime", _stamp(self.window.start)),
                ("endDateTime", _stamp(self.window.end)),
            ]
        etags: dict[str, str | None] = {}
        deleted: set[str] = set()
        while True:
            data = await self._http.json("GET", url, params=params)
            for item in data.get("value") or ():
                ident = str(item["id"])
                if "@removed" in item:
                    deleted.add(ident)
                    etags.pop(ident, None)
                    continue
                deleted.discard(ident)
                self._items[ident] = item
                etags[ident] = str(item.get("changeKey") or "") or None
            params = []
            if data.get("@odata.nextLink"):
                url = str(data["@odata.nextLink"])
                continue
            return Listing(
                str(data.get("@odata.deltaLink") or "") or None,
                etags,
                tuple(sorted(deleted)),
                full=token is None,
            )

    async def fetch(self, calendar_url: str, hrefs: Sequence[str]) -> list[Resource]:
        out: list[Resource] = []
        for href in hrefs:
            item = self._items.get(href)
            if item is None:
                try:
                    item = await self._http.json("GET", f"/me/events/{quote(href, safe='')}")
                except ProviderError:
                    continue  # gone meanwhile
            out.append(Resource(href, str(item.get("changeKey") or "") or None, event_ics(item)))
        return out

    async def put(
        self, calendar_url: str, href: str | None, uid: str, ics: str, etag: str | None
    ) -> Saved:
        body = event_body(ics)
        if href is None:
            saved = await self._http.json(
                "POST", "/me/events", json={**body, "transactionId": uid[:200]}
            )
        elif "STATUS:CANCELLED" in ics:
            path = f"/me/events/{quote(href, safe='')}"
            current = await self._http.json("GET", path)
            await self._http.send("POST", f"{path}/cancel", json={"comment": ""})
            return Saved(href, None, event_ics({**current, "isCancelled": True}))
        else:
            saved = await self._http.json("PATCH", f"/me/events/{quote(href, safe='')}", json=body)
        changed = str(saved.get("changeKey") or "") or None
        return Saved(str(saved["id"]), changed, event_ics(saved))

    async def delete(self, calendar_url: str, href: str) -> None:
        await self._http.send("DELETE", f"/me/events/{quote(href, safe='')}")
