"""The calendar port: what a calendar sync round and meeting scheduling ask of a
calendar provider, whatever it speaks (CalDAV, Google Calendar API, Microsoft Graph).

An adapter names each calendar object by an ``href`` (unique within its calendar) with
an ``etag`` that changes when it changes, and hands bodies over as iCalendar text: the
round parses, expands and stores every provider's events the same way
(:mod:`crmail.domain.ical`). Errors leave an adapter as :mod:`crmail.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from crmail.errors import AuthFailed, ProviderError


class SyncTokenInvalid(ProviderError):
    """The provider no longer knows the change token (CalDAV valid-sync-token, Google
    410 GONE, Graph 410 SyncStateNotFound): list the calendar again."""

    code = "sync_token_invalid"


class CalendarScopeMissing(AuthFailed):
    """The OAuth grant has no calendar scope: the mail works, the calendar needs the
    account reconnected (Settings shows it in words)."""

    code = "calendar_scope_missing"


@dataclass(frozen=True, slots=True)
class RemoteCalendar:
    url: str
    name: str
    ctag: str | None


@dataclass(frozen=True, slots=True)
class Listing:
    """What changed in a calendar: hrefs with their new etag (None: fetch it whatever
    is stored), and hrefs gone."""

    token: str | None
    etags: dict[str, str | None]
    deleted: tuple[str, ...] = ()
    #: ``etags`` names every member: whatever is stored but not listed is gone
    full: bool = False
    #: the collection's ctag to store (servers without sync-collection)
    ctag: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    href: str
    etag: str | None
    ics: str


@dataclass(frozen=True, slots=True)
class Saved:
    """An event written to the calendar."""

    href: str
    etag: str | None
    #: the event as the provider keeps it, where that differs from what was sent (Graph
    #: gives a new event a UID of its own); None: as sent
    ics: str | None = None


class CalendarPort(Protocol):
    """One calendar account at its provider."""

    #: the provider itself sends invitations and cancellations to attendees (Google,
    #: Graph); False: crmail sends them as iMIP mail (CalDAV)
    @property
    def sends_invitations(self) -> bool: ...

    async def calendars(self) -> list[RemoteCalendar]:
        """The account's event calendars."""

    async def changes(self, calendar_url: str, token: str | None, ctag: str | None) -> Listing:
        """What changed since ``token`` (None: every member, ``full``); raises
        :class:`SyncTokenInvalid` when the provider forgot the token."""

    async def fetch(self, calendar_url: str, hrefs: Sequence[str]) -> list[Resource]:
        """The bodies of ``hrefs``; hrefs gone meanwhile are left out."""

    async def put(
        self, calendar_url: str, href: str | None, uid: str, ics: str, etag: str | None
    ) -> Saved:
        """Create (``href`` None) or replace the event."""

    async def delete(self, calendar_url: str, href: str) -> None: ...

    async def close(self) -> None: ...
