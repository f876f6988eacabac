"""Calendar sync: one round per calendar account, and the loop that runs the rounds.

A round, per selected calendar:

1. ask what changed: RFC 6578 sync-collection with the stored token (no token: the
   whole collection). A server without sync-collection is asked its ctag, and only when
   that changed, every href's etag (PROPFIND);
2. fetch the bodies whose etag differs from the stored one (calendar-multiget);
3. parse and expand them (the sync window), decide scope and links, and store the lot
   with the new token in one transaction.

A token the server forgot (403 valid-sync-token) is dropped and the round lists the
whole collection instead: stored hrefs and etags, and events deduplicated by UID, make
that a no-op for everything unchanged, and hrefs no longer listed are removed.

Each account is reached through its provider's calendar port
(:mod:`crmail.providers.calendar_port`): CalDAV, or Google Calendar through the Google
grant of the user's Gmail account.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from crmail.crypto import SecretBox
from crmail.domain.ical import Window, parse_event
from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import AuthFailed, CrmailError, InvalidInput, StorageError
from crmail.providers.caldav import CalDavCalendar, CalDavClient, CalDavSettings
from crmail.providers.caldav.presets import CALDAV_PRESETS, preset_url
from crmail.providers.calendar_port import CalendarPort, Listing, SyncTokenInvalid
from crmail.providers.gcal import DEFAULT_BASE_URL as GOOGLE_API
from crmail.providers.gcal import GoogleCalendar
from crmail.providers.graphcal import DEFAULT_BASE_URL as GRAPH_API
from crmail.providers.graphcal import GraphCalendar
from crmail.providers.netcheck import allowed_addresses
from crmail.providers.oauth import TokenKeeper
from crmail.storage import calendar as store
from crmail.storage.calendar_lock import CalendarLoopLock
from crmail.storage.db import Database
from crmail.storage.views import UserInfo

if TYPE_CHECKING:
    from crmail.config import Settings

log = logging.getLogger(__name__)

#: seconds between listings of an account's calendars (new calendars, renames)
DISCOVERY_INTERVAL = 3600.0


@dataclass(frozen=True, slots=True)
class CalendarOptions:
    days_back: int = 90
    days_ahead: int = 365
    #: seconds between rounds of one account
    interval: float = 300.0
    #: plain-http CalDAV URLs allowed (tests; a server on loopback)
    allow_plain_http: bool = False
    #: "now" for the window (tests pin it)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Google's API base (CRMAIL_GMAIL_API_URL; the calendar is under /calendar/v3)
    google_api_url: str = GOOGLE_API
    #: Microsoft Graph's base (CRMAIL_GRAPH_API_URL)
    graph_api_url: str = GRAPH_API
    #: access tokens of OAuth grants (Google, Graph calendars); None: they cannot sync
    tokens: TokenKeeper | None = None


@dataclass(frozen=True, slots=True)
class AccountRound:
    calendars: int
    fetched: int
    stored: int
    updated: int
    cancelled: int
    skipped: dict[str, int]
    full_listings: int


def client_for(job: store.SyncJob, box: SecretBox, options: CalendarOptions) -> CalDavClient:
    secret = box.open(job.sealed)
    return CalDavClient(
        CalDavSettings(
            job.url,
            job.username,
            secret.get("password", ""),
            require_tls=not options.allow_plain_http,
        )
    )


async def port_for(job: store.SyncJob, box: SecretBox, options: CalendarOptions) -> CalendarPort:
    """The account's calendar port: CalDAV, or Google Calendar / Microsoft Graph through
    the OAuth grant of the user's Gmail / Graph mailbox."""
    if job.provider in ("google", "microsoft"):
        keeper, grant = options.tokens, job.mail_account_id
        if keeper is None or grant is None:
            raise InvalidInput("this calendar has no sign-in (OAuth grant) to use")
        held: list[str] = []

        async def token() -> str:
            held[:] = [(await keeper.access_token(grant)).token]
            return held[0]

        async def refreshed() -> str:
            refused = held[0] if held else None
            held[:] = [(await keeper.access_token(grant, refused=refused)).token]
            return held[0]

        if job.provider == "google":
            return GoogleCalendar(
                token, refresh_access_token=refreshed, base_url=options.google_api_url
            )
        window = Window.around(options.clock(), options.days_back, options.days_ahead)
        return GraphCalendar(
            token, window, refresh_access_token=refreshed, base_url=options.graph_api_url
        )
    return CalDavCalendar(await asyncio.to_thread(client_for, job, box, options))


async def _listing(port: CalendarPort, cal: store.CalendarState) -> tuple[Listing, int]:
    """What changed, and 1 if the whole collection was listed."""
    try:
        listing = await port.changes(cal.url, cal.sync_token, cal.ctag)
    except SyncTokenInvalid:
        log.info("calendar %s: sync token expired, listing the collection", cal.id)
        listing = await port.changes(cal.url, None, cal.ctag)
        return listing, 1
    return listing, int(listing.full)


async def _round_calendar(
    port: CalendarPort, cal: store.CalendarState, window: Window
) -> tuple[list[store.Fetched], list[str], str | None, str | None, int]:
    listing, full = await _listing(port, cal)
    gone = set(listing.deleted)
    if listing.full:
        gone |= set(cal.etags) - set(listing.etags)
    wanted = sorted(
        href
        for href, etag in listing.etags.items()
        if href not in cal.etags or etag is None or cal.etags[href] != etag
    )
    fetched: list[store.Fetched] = []
    for r in await port.fetch(cal.url, wanted) if wanted else []:
        try:
            event = parse_event(r.ics, window)
        except InvalidInput as exc:
            log.warning("calendar %s: %s unreadable: %s", cal.id, r.href, exc.message)
            event = None
        fetched.append(store.Fetched(r.href, r.etag or listing.etags.get(r.href), r.ics, event))
    return fetched, sorted(gone - {f.href for f in fetched}), listing.token, listing.ctag, full


async def sync_account(
    db: Database,
    box: SecretBox,
    job: store.SyncJob,
    options: CalendarOptions,
    *,
    discover: bool = True,
) -> AccountRound:
    """One round of one calendar account; errors are recorded on the account and raised.

    ``discover``: list the account's calendars first (new ones start selected); the loop
    does it once an hour, so a quiet round is one REPORT per calendar."""
    now = options.clock()
    window = Window.around(now, options.days_back, options.days_ahead)
    try:
        port = await port_for(job, box, options)
        try:
            if discover:
                found = await port.calendars()
                await db.write(
                    lambda s: store.upsert_calendars(
                        s, job.account_id, [(c.url, c.name) for c in found]
                    )
                )
            cals = await db.read(lambda s: store.selected_calendars(s, job.account_id))
            totals = AccountRound(len(cals), 0, 0, 0, 0, {}, 0)
            for cal in cals:
                fetched, gone, token, ctag, full = await _round_calendar(port, cal, window)
                result = await db.write(
                    functools.partial(
                        store.apply_round,
                        job=job,
                        calendar_id=cal.id,
                        fetched=fetched,
                        gone=gone,
                        token=token,
                        ctag=ctag,
                    )
                )
                skipped = dict(totals.skipped)
                for k, v in result.skipped.items():
                    skipped[k] = skipped.get(k, 0) + v
                totals = AccountRound(
                    totals.calendars,
                    totals.fetched + len(fetched),
                    totals.stored + result.stored,
                    totals.updated + result.updated,
                    totals.cancelled + result.cancelled,
                    skipped,
                    totals.full_listings + full,
                )
        finally:
            await port.close()
    except StorageError:
        raise
    except CrmailError as exc:
        # Shown in Settings as is: with what to do (e.g. reconnect to grant the calendar).
        message = f"{exc.message} {exc.hint}" if exc.hint else exc.message
        code = exc.code
        await db.write(lambda s: store.record_account_result(s, job.account_id, message, code))
        raise
    await db.write(lambda s: store.record_account_result(s, job.account_id, None, None))
    return totals


async def connect_account(
    db: Database,
    box: SecretBox,
    options: CalendarOptions,
    policy: AddressPolicy,
    user: UserInfo,
    *,
    url: str,
    username: str,
    password: str,
    preset: str | None = None,
    mail_account_id: int | None = None,
    auto_create: bool = False,
) -> store.CalendarAccountView:
    """Connect a calendar account (API and web app): the server must be where mail
    servers may be, and a first sync round must pass before the account is kept."""
    url = url.strip() or (preset_url(preset, username) if preset else None) or ""
    if not url:
        raise InvalidInput("give the CalDAV URL", hint="or choose a preset with a fixed URL")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("the CalDAV URL must be an https:// address")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    await allowed_addresses(parts.hostname, port, policy)
    view = await db.write(
        lambda s: store.add_account(
            s,
            user,
            box,
            url=url,
            username=username,
            password=password,
            preset=preset,
            mail_account_id=mail_account_id,
            auto_create=auto_create,
        )
    )
    try:
        job = await db.read(lambda s: store.job_for(s, user, view.id))
        await sync_account(db, box, job, options)
    except BaseException as exc:
        await db.write(lambda s: store.delete_account(s, user, view.id))
        found = CALDAV_PRESETS.get(preset or "")
        if isinstance(exc, AuthFailed) and found is not None:
            raise AuthFailed(exc.message, hint=found.app_password_hint) from None
        raise
    return await db.read(lambda s: store.get_account(s, user, view.id))


class CalendarSync:
    """Runs a round of every calendar account every ``options.interval`` seconds."""

    def __init__(self, db: Database, box: SecretBox, options: CalendarOptions) -> None:
        self.db = db
        self.box = box
        self.options = options
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: when each account's calendars were last listed (monotonic seconds)
        self._discovered: dict[int, float] = {}
        self.lock = CalendarLoopLock(db)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="calendar-sync")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> None:
        if self.options.tokens is not None:
            box = self.box
            await self.db.write(lambda s: store.ensure_grant_calendars(s, box))
        jobs = await self.db.read(store.sync_jobs)
        now = time.monotonic()
        for job in jobs:
            last = self._discovered.get(job.account_id)
            discover = last is None or now - last >= DISCOVERY_INTERVAL
            try:
                await sync_account(self.db, self.box, job, self.options, discover=discover)
                if discover:
                    self._discovered[job.account_id] = now
            except StorageError:
                raise
            except CrmailError as exc:
                log.warning("calendar account %s: %s", job.account_id, exc.message)

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            await asyncio.to_thread(self.lock.release)

    async def _loop(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.lock.acquire):
                    await self.run_once()
            except StorageError as exc:
                log.warning("calendar sync: database unavailable: %s", exc.message)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.interval)


def options_for(settings: Settings, db: Database, box: SecretBox) -> CalendarOptions:
    """The calendar options of a running crmail (the sync loop, the API, the web app)."""
    from crmail.sync.oauth import token_keeper

    return CalendarOptions(
        interval=settings.calendar_sync_interval,
        allow_plain_http=settings.calendar_allow_http,
        google_api_url=settings.gmail_api_url or GOOGLE_API,
        graph_api_url=settings.graph_api_url or GRAPH_API,
        tokens=token_keeper(settings, db, box),
    )
