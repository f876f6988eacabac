"""Calendar sync benchmark against a real Radicale: the initial import of N events (20%
weekly series) and a no-change round, next to a raw ``sync-collection`` REPORT of the
same calendar (what the server itself costs).

The calendar is seeded by writing the .ics files into Radicale's storage folder (PUTting
5,000 objects one by one would measure Radicale, not crmail). Half the events have a
known contact as attendee (stored), half a stranger (skipped, remembered by etag).

Measured:
1. initial round: sync-collection without a token (every href), calendar-multiget of
   all bodies, parse + expand + scope + store, in one ``sync_account`` call;
2. a no-change round (one sync-collection REPORT with the stored token per calendar);
3. raw REPORTs with the same ``caldav`` client: the full listing and the token round.

``--store-only`` times the store stage alone (no server): the same N bodies parsed in
process and written by ``storage.calendar.apply_round`` in one transaction, next to the
parse-and-expand of the same bodies in the same run (the baseline).

Usage: .venv/bin/python bench/calendar_bench.py [--events 5000] [--rounds 5] [--store-only]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import caldav
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.radicale import Radicale

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.domain.ical import Window, parse_event
from crmail.services import Services
from crmail.storage import calendar as store
from crmail.storage import crm
from crmail.storage.calendar_models import CalendarEvent, EventOccurrence
from crmail.sync.calendar import CalendarOptions, sync_account

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


def ics(i: int, recurring: bool, known: bool) -> str:
    start = NOW + timedelta(days=(i % 400) - 60, hours=i % 9)
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    end = (start + timedelta(minutes=30)).strftime("%Y%m%dT%H%M%SZ")
    who = f"contact{i % 500}@customer.test" if known else f"stranger{i}@else.test"
    rule = "RRULE:FREQ=WEEKLY;COUNT=10\r\n" if recurring else ""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:bench-{i}@bench\r\nDTSTAMP:20270101T000000Z\r\nDTSTART:{stamp}\r\n"
        f"DTEND:{end}\r\n{rule}SUMMARY:Meeting {i}\r\n"
        "ORGANIZER:mailto:rep@example.test\r\n"
        f"ATTENDEE;CN=Guest {i}:mailto:{who}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def seed(radicale: Radicale, n: int) -> caldav.Calendar:
    radicale.add_user("rep", "pw")
    client = caldav.DAVClient(
        url=radicale.url, username="rep", password="pw", require_tls=False, timeout=600
    )
    cal = client.principal().make_calendar(name="Work", cal_id="work")
    folder = radicale.dir / "collections" / "collection-root" / "rep" / "work"
    for i in range(n):
        (folder / f"bench-{i}.ics").write_text(ics(i, i % 5 == 0, i % 2 == 0), encoding="utf-8")
    return cal


def timed_report(cal: caldav.Calendar, token: str | None) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = cal.get_objects_by_sync_token(token, load_objects=False, disable_fallback=True)
    return time.perf_counter() - t0, len(list(result.objects))


def open_services(tmp: str) -> Services:
    return Services.open(
        Settings(
            data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/crmail.db", secret_keys=(new_key(),)
        )
    )


def rep_account(s, services: Services, url: str, username: str, password: str):  # type: ignore[no-untyped-def]
    """A rep in a workspace of 500 contacts, and the rep's CalDAV account."""
    ws = crm.create_workspace(s, "Bench").id
    u = crm.create_user(s, ws, "rep@example.test", name="Rep").user
    for c in range(500):
        crm.create_contact(s, ws, name=f"C{c}", emails=[f"contact{c}@customer.test"])
    account = store.add_account(s, u, services.box, url=url, username=username, password=password)
    return u, account


def store_only(n: int) -> None:
    """The store stage of an import of ``n`` events, next to parsing them."""
    with tempfile.TemporaryDirectory() as tmp:
        services = open_services(tmp)
        try:

            def world(s):  # type: ignore[no-untyped-def]
                u, account = rep_account(s, services, "https://dav.test/", "r", "p")
                store.upsert_calendars(s, account.id, [("https://dav.test/cal/", "Work")])
                cal = store.selected_calendars(s, account.id)[0].id
                return store.job_for(s, u, account.id), cal

            job, cal = services.db.run(world)
            window = Window.around(NOW)
            bodies = [ics(i, i % 5 == 0, i % 2 == 0) for i in range(n)]
            t0 = time.perf_counter()
            parsed = [parse_event(b, window) for b in bodies]
            parse_s = time.perf_counter() - t0
            fetched = [
                store.Fetched(f"/cal/bench-{i}.ics", f'"{i}"', b, p)
                for i, (b, p) in enumerate(zip(bodies, parsed, strict=True))
            ]
            t0 = time.perf_counter()
            result = services.db.run(
                lambda s: store.apply_round(s, job, cal, fetched, [], token="t", ctag=None)
            )
            store_s = time.perf_counter() - t0
        finally:
            services.close()
    print(
        f"store stage of {n} events ({result.stored} stored, "
        f"{sum(result.skipped.values())} skipped), SQLite: {store_s:.2f} s "
        f"({store_s / max(result.stored, 1) * 1000:.2f} ms per stored event); parse and "
        f"expand of the same bodies: {parse_s:.2f} s; store/parse = {store_s / parse_s:.2f}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--store-only", action="store_true")
    args = ap.parse_args()
    if args.store_only:
        store_only(args.events)
        return

    with tempfile.TemporaryDirectory() as tmp, Radicale() as radicale:
        cal = seed(radicale, args.events)
        services = open_services(tmp)
        try:

            def world(s):  # type: ignore[no-untyped-def]
                u, account = rep_account(s, services, radicale.url, "rep", "pw")
                return store.job_for(s, u, account.id)

            job = services.db.run(world)
            options = replace(CalendarOptions(allow_plain_http=True), clock=lambda: NOW)

            # Radicale indexes a folder written behind its back on the first listing:
            # warm it with one raw REPORT so the import below measures crmail.
            timed_report(cal, None)

            t0 = time.perf_counter()
            first = await sync_account(services.db, services.box, job, options)
            initial = time.perf_counter() - t0
            events = services.db.run(
                lambda s: s.scalar(select(func.count()).select_from(CalendarEvent))
            )
            occurrences = services.db.run(
                lambda s: s.scalar(select(func.count()).select_from(EventOccurrence))
            )

            quiet: list[float] = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                again = await sync_account(services.db, services.box, job, options, discover=False)
                quiet.append(time.perf_counter() - t0)
                assert again.fetched == 0 and again.full_listings == 0

            token = services.db.run(
                lambda s: store.selected_calendars(s, job.account_id)[0].sync_token
            )
            raw_full = [timed_report(cal, None) for _ in range(args.rounds)]
            raw_token = [timed_report(cal, token) for _ in range(args.rounds)]
        finally:
            services.close()

    n = args.events
    print(f"calendar of {n} events ({n // 5} weekly series of 10), Radicale on loopback, SQLite")
    print(
        f"initial import: {initial:.2f} s ({n / initial:.0f} events/s); fetched {first.fetched}, "
        f"stored {first.stored} events with {occurrences} occurrences ({events} rows), "
        f"skipped {sum(first.skipped.values())} {dict(first.skipped)}"
    )
    print(
        f"raw full sync-collection REPORT ({raw_full[0][1]} hrefs): "
        f"median {statistics.median(t for t, _ in raw_full) * 1000:.0f} ms"
    )
    print(
        f"no-change round (crmail, one calendar): median {statistics.median(quiet) * 1000:.1f} ms"
        f" over {len(quiet)} rounds"
    )
    print(
        "raw sync-collection REPORT with the token: median "
        f"{statistics.median(t for t, _ in raw_token) * 1000:.1f} ms "
        f"({raw_token[0][1]} changes)"
    )


if __name__ == "__main__":
    asyncio.run(main())
