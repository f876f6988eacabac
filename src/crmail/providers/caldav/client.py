"""A blocking CalDAV client over the ``caldav`` library, speaking crmail's terms.

Objects are named by their href's path (unique within a calendar). A round asks for what
changed (:meth:`CalDavClient.changes`: RFC 6578 sync-collection with the stored token),
and only fetches the changed bodies (one calendar-multiget REPORT per batch). Servers
without sync-collection are listed with a depth-1 PROPFIND of etags, skipped entirely
while the calendar's ctag is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from caldav.davclient import DAVClient
from caldav.elements import dav
from caldav.elements.base import ValuedBaseElement
from caldav.lib import error as caldav_error

from crmail.errors import (
    AuthFailed,
    ConnectFailed,
    CrmailError,
    InvalidInput,
    ProtocolError,
    ProviderRateLimited,
)
from crmail.providers.calendar_port import (
    Listing,
    RemoteCalendar,
    Resource,
    Saved,
    SyncTokenInvalid,
)

__all__ = [
    "CalDavCalendar",
    "CalDavClient",
    "CalDavSettings",
    "Listing",
    "RemoteCalendar",
    "Resource",
    "SyncTokenInvalid",
]

log = logging.getLogger(__name__)

#: hrefs per calendar-multiget REPORT
MULTIGET_BATCH = 200


class _GetCTag(ValuedBaseElement):
    tag = "{http://calendarserver.org/ns/}getctag"


@dataclass(frozen=True, slots=True)
class CalDavSettings:
    #: the server (discovery: well-known URL, principal, home set) or a calendar's URL
    url: str
    username: str
    password: str = field(repr=False)
    #: plain http is refused unless this is False (tests, a server on loopback)
    require_tls: bool = True
    timeout: int = 30


def _path(url: Any) -> str:
    return urlsplit(str(url)).path


@contextmanager
def translated(what: str) -> Iterator[None]:
    """The library's and the HTTP stack's errors as :mod:`crmail.errors`."""
    try:
        yield
    except CrmailError:
        raise
    except caldav_error.AuthorizationError as exc:
        if getattr(exc, "reason", "") == "Forbidden" or "403" in str(exc):
            raise AuthFailed(
                f"the CalDAV server refused {what}",
                hint="check the calendar's URL and that this login may use it",
            ) from None
        raise AuthFailed(
            "the CalDAV server refused the username or password",
            hint="many providers need an app password for calendar apps",
        ) from None
    except caldav_error.RateLimitError as exc:
        raise ProviderRateLimited(
            f"the CalDAV server asks to slow down ({what})", retry_after=60
        ) from exc
    except caldav_error.NotFoundError as exc:
        raise ProtocolError(f"not found on the CalDAV server: {what}") from exc
    except caldav_error.DAVError as exc:
        raise ProtocolError(f"the CalDAV server failed {what}: {exc}") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise ConnectFailed(f"cannot reach the CalDAV server ({type(exc).__name__})") from None
    except Exception as exc:  # the HTTP stack's own errors (niquests/requests)
        name = type(exc).__name__
        if "Connect" in name or "Timeout" in name or "SSL" in name:
            raise ConnectFailed(f"cannot reach the CalDAV server ({name})") from None
        raise ProtocolError(f"the CalDAV server failed {what} ({name})") from None


class CalDavClient:
    def __init__(self, settings: CalDavSettings) -> None:
        if settings.require_tls and not settings.url.lower().startswith("https://"):
            raise InvalidInput(
                "a CalDAV URL must start with https://",
                hint="calendar passwords are never sent over plain http",
            )
        self.settings = settings
        self._client = DAVClient(
            url=settings.url,
            username=settings.username,
            password=settings.password,
            timeout=settings.timeout,
            require_tls=settings.require_tls,
        )

    def close(self) -> None:
        with translated("closing"):
            self._client.close()

    # --- discovery ---------------------------------------------------------------------

    def calendars(self) -> list[RemoteCalendar]:
        """The event calendars of the login (or the one calendar the URL points at)."""
        with translated("listing calendars"):
            try:
                principal = self._client.principal()  # type: ignore[no-untyped-call]
                found = principal.calendars()
            except caldav_error.NotFoundError:
                found = [self._client.calendar(url=self.settings.url)]  # type: ignore[no-untyped-call]
            out: list[RemoteCalendar] = []
            for cal in found:
                comps = _components(cal)
                if comps and "VEVENT" not in comps:
                    continue  # a task list
                name = cal.get_display_name() or _path(cal.url).rstrip("/").rsplit("/", 1)[-1]
                out.append(RemoteCalendar(str(cal.url), str(name), self._ctag(cal)))
            return out

    def _calendar(self, url: str) -> Any:
        return self._client.calendar(url=url)  # type: ignore[no-untyped-call]

    def _ctag(self, cal: Any) -> str | None:
        try:
            value = cal.get_property(_GetCTag())
        except caldav_error.DAVError:
            return None
        return str(value) if value else None

    def ctag(self, calendar_url: str) -> str | None:
        with translated("reading the calendar's ctag"):
            return self._ctag(self._calendar(calendar_url))

    # --- changes ---------------------------------------------------------------------------

    def changes(self, calendar_url: str, token: str | None) -> Listing:
        """What changed since ``token`` (None: every member, ``full``).

        Raises :class:`SyncTokenInvalid` when the server forgot the token, and
        ProtocolError when it lacks sync-collection (see :meth:`etags`).
        """
        cal = self._calendar(calendar_url)
        with translated("the sync-collection report"):
            try:
                result = cal.get_objects_by_sync_token(
                    token, load_objects=False, disable_fallback=True
                )
            except caldav_error.AuthorizationError as exc:
                if dav.ValidSyncToken.tag in getattr(exc, "preconditions", ()):
                    raise SyncTokenInvalid(
                        "the CalDAV server no longer knows the sync token"
                    ) from None
                raise
            deleted = {_path(u) for u in result.deleted_urls}
            etags: dict[str, str | None] = {}
            for obj in result.objects:
                href = _path(obj.url)
                if href in deleted or href.rstrip("/") == _path(calendar_url).rstrip("/"):
                    continue
                etags[href] = (obj.props or {}).get(dav.GetEtag.tag)
            return Listing(
                str(result.sync_token) if result.sync_token else None,
                etags,
                tuple(sorted(deleted)),
                full=token is None,
            )

    def etags(self, calendar_url: str) -> Listing:
        """Every member and its etag by PROPFIND (servers without sync-collection)."""
        cal = self._calendar(calendar_url)
        with translated("listing the calendar's etags"):
            response = cal._query_properties([dav.GetEtag()], depth=1)
            props = response.expand_simple_props([dav.GetEtag()])
            own = _path(calendar_url).rstrip("/")
            etags = {
                _path(cal.url.join(href)): p.get(dav.GetEtag.tag)
                for href, p in props.items()
                if _path(cal.url.join(href)).rstrip("/") != own
            }
            return Listing(None, etags, (), full=True)

    def fetch(self, calendar_url: str, hrefs: Sequence[str]) -> list[Resource]:
        """The bodies of ``hrefs`` (calendar-multiget); hrefs gone meanwhile are left out."""
        cal = self._calendar(calendar_url)
        out: list[Resource] = []
        with translated("fetching events"):
            for i in range(0, len(hrefs), MULTIGET_BATCH):
                urls = [cal.url.join(h) for h in hrefs[i : i + MULTIGET_BATCH]]
                for href, data, tags in cal._multiget(urls, raise_notfound=False):
                    if data:
                        out.append(
                            Resource(_path(cal.url.join(href)), tags.get(dav.GetEtag.tag), data)
                        )
        return out

    # --- writes -----------------------------------------------------------------------------

    def put(
        self, calendar_url: str, href: str | None, uid: str, ics: str, etag: str | None
    ) -> tuple[str, str | None]:
        """Create (``href`` None) or replace an event; returns its href and new etag.

        A create refuses to overwrite (If-None-Match); a replace given an etag refuses to
        clobber a change made elsewhere meanwhile (If-Match).
        """
        cal = self._calendar(calendar_url)
        if href is None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in uid)
            target = cal.url.join(f"{safe}.ics")
            headers = {"If-None-Match": "*"}
        else:
            target = cal.url.join(href)
            headers = {"If-Match": etag} if etag else {}
        headers["Content-Type"] = "text/calendar; charset=utf-8"
        with translated("saving the event"):
            response = self._client.put(str(target), ics, headers)
            if response.status == 412:
                raise ProtocolError(
                    "the event changed in the calendar meanwhile",
                    hint="the next sync brings the change in; try again then",
                )
            if response.status not in (200, 201, 204):
                raise ProtocolError(f"the CalDAV server refused the event (HTTP {response.status})")
            new_etag = response.headers.get("ETag")
        return _path(target), new_etag

    def delete(self, calendar_url: str, href: str) -> None:
        cal = self._calendar(calendar_url)
        with translated("deleting the event"):
            response = self._client.delete(str(cal.url.join(href)))
            if response.status not in (200, 204, 404):
                raise ProtocolError(
                    f"the CalDAV server refused the delete (HTTP {response.status})"
                )


def _components(cal: Any) -> list[str]:
    try:
        return [str(c) for c in cal.get_supported_components()]
    except Exception:  # servers that do not say support events
        return []


class CalDavCalendar:
    """The calendar port over :class:`CalDavClient`: each call runs in a thread (the
    ``caldav`` library blocks). Invitations are crmail's to send (iMIP)."""

    sends_invitations = False

    def __init__(self, client: CalDavClient) -> None:
        self.client = client

    async def calendars(self) -> list[RemoteCalendar]:
        return await asyncio.to_thread(self.client.calendars)

    def _changes(self, calendar_url: str, token: str | None, ctag: str | None) -> Listing:
        try:
            return self.client.changes(calendar_url, token)
        except SyncTokenInvalid:
            raise
        except ProtocolError:
            pass  # no sync-collection on this server: ctag, then etags
        new_ctag = self.client.ctag(calendar_url)
        if new_ctag is not None and new_ctag == ctag:
            return Listing(token, {}, (), ctag=new_ctag)
        listing = self.client.etags(calendar_url)
        return Listing(None, listing.etags, (), full=True, ctag=new_ctag)

    async def changes(self, calendar_url: str, token: str | None, ctag: str | None) -> Listing:
        return await asyncio.to_thread(self._changes, calendar_url, token, ctag)

    async def fetch(self, calendar_url: str, hrefs: Sequence[str]) -> list[Resource]:
        return await asyncio.to_thread(self.client.fetch, calendar_url, hrefs)

    async def put(
        self, calendar_url: str, href: str | None, uid: str, ics: str, etag: str | None
    ) -> Saved:
        return Saved(*await asyncio.to_thread(self.client.put, calendar_url, href, uid, ics, etag))

    async def delete(self, calendar_url: str, href: str) -> None:
        await asyncio.to_thread(self.client.delete, calendar_url, href)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)
