"""Calendar sync against a real Radicale: scope and links, recurrence, time zones,
incremental sync-collection rounds, and recovery from a forgotten sync token.

"Another client" is a plain ``caldav`` client writing to the same calendar.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import caldav
import icalendar
import pytest
from sqlalchemy import func, select, update

from crmail.services import Services
from crmail.storage import calendar as store
from crmail.storage.calendar_models import (
    CalendarEvent,
    CalendarRow,
    EventLink,
    EventOccurrence,
)
from crmail.storage.crm import UserInfo
from crmail.storage.models import ContactEmail, WebhookEndpoint, WebhookEvent
from crmail.sync.calendar import AccountRound, CalendarOptions, CalendarSync, sync_account
from tests.factories import World, new_world
from tests.servers.radicale import Radicale

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
OPTIONS = CalendarOptions(allow_plain_http=True, clock=lambda: NOW)
_logins = itertools.count(1)


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    with Radicale() as server:
        yield server


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


class Cal:
    """A user's calendar on Radicale, the CRM's calendar account for it, and another
    client (plain caldav) to change it behind the CRM's back."""

    def __init__(self, services: Services, world: World, radicale: Radicale) -> None:
        n = next(_logins)
        self.login = f"rep{n}"
        self.email = f"rep{n}@example.test"
        radicale.add_user(self.login, "pw")
        self.services = services
        self.user_id = world.user(self.email, "Rep")
        self.user = UserInfo(self.user_id, world.workspace_id, self.email, "Rep", "member")
        client = caldav.DAVClient(
            url=radicale.url, username=self.login, password="pw", require_tls=False
        )
        self.calendar = client.principal().make_calendar(name="Work", cal_id="work")
        self.account_id = services.db.run(
            lambda s: (
                store.add_account(
                    s, self.user, services.box, url=radicale.url, username=self.login, password="pw"
                ).id
            )
        )

    def put(self, uid: str, body: str) -> Any:
        return self.calendar.save_event(vcal(uid, body))

    def other_client_object(self, uid: str) -> Any:
        return self.calendar.get_event_by_uid(uid)

    async def sync(self, **kw: Any) -> AccountRound:
        job = self.services.db.run(lambda s: store.job_for(s, self.user, self.account_id))
        if kw:
            from dataclasses import replace

            job = replace(job, **kw)
        return await sync_account(self.services.db, self.services.box, job, OPTIONS)


def vcal(uid: str, body: str) -> str:
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + body.strip().replace("\n", "\r\n").replace("UID:X", f"UID:{uid}")
        + "\r\nEND:VCALENDAR\r\n"
    )
    # Radicale wants a VTIMEZONE for every TZID, as RFC 5545 says.
    parsed = icalendar.Calendar.from_ical(text)
    parsed.add_missing_timezones()
    return str(parsed.to_ical().decode())


def event(uid: str, start: str, end: str, *extra: str, summary: str = "Demo") -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20270101T000000Z",
        f"DTSTART{start}",
        f"DTEND{end}",
        f"SUMMARY:{summary}",
        *extra,
        "END:VEVENT",
    ]
    return "\n".join(lines)


@pytest.fixture
def cal(services: Services, world: World, radicale: Radicale) -> Cal:
    return Cal(services, world, radicale)


def events_by_uid(services: Services) -> dict[str, CalendarEvent]:
    def read(s: Any) -> dict[str, CalendarEvent]:
        rows = list(s.scalars(select(CalendarEvent)))
        for r in rows:
            s.expunge(r)
        return {r.uid: r for r in rows}

    return services.db.run(read)


def links(services: Services, uid: str) -> set[tuple[str, int]]:
    return services.db.run(
        lambda s: {
            (t, i)
            for t, i in s.execute(
                select(EventLink.subject_type, EventLink.subject_id)
                .join(CalendarEvent, CalendarEvent.id == EventLink.event_id)
                .where(CalendarEvent.uid == uid)
            ).all()
        }
    )


def occurrences(services: Services, uid: str) -> list[tuple[datetime, datetime, str, str | None]]:
    return services.db.run(
        lambda s: [
            (o.starts_at, o.ends_at, o.status, o.tzid)
            for o in s.scalars(
                select(EventOccurrence)
                .join(CalendarEvent, CalendarEvent.id == EventOccurrence.event_id)
                .where(CalendarEvent.uid == uid)
                .order_by(EventOccurrence.starts_at)
            )
        ]
    )


ORG = "ORGANIZER;CN=Rep:mailto:{me}"
BOB = "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@customer.test"


async def test_only_meetings_with_contacts_are_imported_and_linked(
    cal: Cal, world: World, services: Services
) -> None:
    lead = world.lead("Customer Inc")
    bob = world.contact("bob@customer.test", name="Bob", lead_id=lead)
    deal = world.deal("Pilot", bob, lead_id=lead)
    colleague = "pat@example.test"
    world.user(colleague)
    org = ORG.format(me=cal.email)
    cal.put("with-bob", event("X", ":20270305T100000Z", ":20270305T110000Z", org, BOB))
    cal.put(
        "stranger",
        event("X", ":20270306T100000Z", ":20270306T110000Z", org, "ATTENDEE:mailto:eve@else.test"),
    )
    cal.put(
        "coworker",
        event("X", ":20270307T100000Z", ":20270307T110000Z", org, f"ATTENDEE:mailto:{colleague}"),
    )
    cal.put("dentist", event("X", ":20270308T100000Z", ":20270308T110000Z", "CLASS:PRIVATE"))
    cal.put("long-ago", event("X", ":20250101T100000Z", ":20250101T110000Z", org, BOB))

    result = await cal.sync()

    assert set(events_by_uid(services)) == {"with-bob"}
    assert links(services, "with-bob") == {("contact", bob), ("lead", lead), ("deal", deal)}
    assert result.stored == 1
    assert result.skipped == {
        "no_known_contact": 1,
        "only_workspace_users": 1,
        "no_participants": 1,
        "outside_window": 1,
    }
    page = services.db.run(lambda s: store.meeting_timeline(s, cal.user, "contact", bob))
    assert [i.meeting.summary for i in page.items] == ["Demo"]
    assert "bob@customer.test is the attendee" in page.items[0].reason


async def test_recurring_series_in_berlin_with_exception_cancelled_instance_and_dst(
    cal: Cal, world: World, services: Services
) -> None:
    world.contact("bob@customer.test")
    org = ORG.format(me=cal.email)
    master = event(
        "weekly",
        ";TZID=Europe/Berlin:20270315T090000",
        ";TZID=Europe/Berlin:20270315T100000",
        "RRULE:FREQ=WEEKLY;COUNT=5",
        "EXDATE;TZID=Europe/Berlin:20270329T090000",
        org,
        BOB,
        summary="Weekly",
    )
    moved = event(
        "weekly",
        ";TZID=Europe/Berlin:20270322T140000",
        ";TZID=Europe/Berlin:20270322T150000",
        "RECURRENCE-ID;TZID=Europe/Berlin:20270322T090000",
        summary="Weekly (moved)",
    )
    cancelled = event(
        "weekly",
        ";TZID=Europe/Berlin:20270405T090000",
        ";TZID=Europe/Berlin:20270405T100000",
        "RECURRENCE-ID;TZID=Europe/Berlin:20270405T090000",
        "STATUS:CANCELLED",
        summary="Weekly",
    )
    cal.put("weekly", "\n".join([master, moved, cancelled]))

    await cal.sync()

    def utc(*a: int) -> datetime:
        return datetime(*a, tzinfo=UTC)

    # 9:00 Berlin is 08:00 UTC before 28 March 2027 (CET) and 07:00 UTC after (CEST);
    # 29 March is an EXDATE, 22 March moved to the afternoon, 5 April cancelled.
    assert occurrences(services, "weekly") == [
        (utc(2027, 3, 15, 8), utc(2027, 3, 15, 9), "confirmed", "Europe/Berlin"),
        (utc(2027, 3, 22, 13), utc(2027, 3, 22, 14), "confirmed", "Europe/Berlin"),
        (utc(2027, 4, 5, 7), utc(2027, 4, 5, 8), "cancelled", "Europe/Berlin"),
        (utc(2027, 4, 12, 7), utc(2027, 4, 12, 8), "confirmed", "Europe/Berlin"),
    ]
    ev = events_by_uid(services)["weekly"]
    assert (ev.tzid, ev.rrule) == ("Europe/Berlin", "FREQ=WEEKLY;COUNT=5")
    upcoming = services.db.run(lambda s: store.upcoming(s, cal.user, NOW))
    assert [(u.starts_at.day, u.status) for u in upcoming] == [
        (15, "confirmed"),
        (22, "confirmed"),
        (5, "cancelled"),
        (12, "confirmed"),
    ]


async def test_all_day_event(cal: Cal, world: World, services: Services) -> None:
    world.contact("bob@customer.test")
    org = ORG.format(me=cal.email)
    cal.put("offsite", event("X", ";VALUE=DATE:20270310", ";VALUE=DATE:20270312", org, BOB))

    await cal.sync()

    ev = events_by_uid(services)["offsite"]
    assert ev.all_day is True
    assert occurrences(services, "offsite") == [
        (datetime(2027, 3, 10, tzinfo=UTC), datetime(2027, 3, 12, tzinfo=UTC), "confirmed", None)
    ]


async def test_incremental_round_after_another_client_moves_edits_and_deletes(
    cal: Cal, world: World, services: Services
) -> None:
    bob = world.contact("bob@customer.test")
    services.db.run(
        lambda s: s.add(
            WebhookEndpoint(
                workspace_id=world.workspace_id, url="https://hooks.example/", secret=b"x"
            )
        )
    )
    org = ORG.format(me=cal.email)
    for uid, day in (("a", 5), ("b", 6), ("c", 7)):
        cal.put(uid, event("X", f":202703{day:02d}T100000Z", f":202703{day:02d}T110000Z", org, BOB))
    first = await cal.sync()
    assert (first.stored, first.fetched) == (3, 3)

    quiet = await cal.sync()
    assert (quiet.fetched, quiet.full_listings, quiet.stored, quiet.updated) == (0, 0, 0, 0)

    # Another client moves "a" by a day, retitles "b" and deletes "c".
    cal.put("a", event("X", ":20270306T150000Z", ":20270306T160000Z", org, BOB))
    cal.put("b", event("X", ":20270306T100000Z", ":20270306T110000Z", org, BOB, summary="Renamed"))
    cal.other_client_object("c").delete()

    changed = await cal.sync()

    assert (changed.fetched, changed.updated, changed.cancelled, changed.full_listings) == (
        2,
        2,
        1,
        0,
    )
    evs = events_by_uid(services)
    assert evs["a"].starts_at == datetime(2027, 3, 6, 15, tzinfo=UTC)
    assert evs["b"].summary == "Renamed"
    # A deleted meeting stays on the timeline, marked cancelled.
    assert evs["c"].status == "cancelled"
    hooks = services.db.run(
        lambda s: [
            (t, p["uid"]) for t, p in s.execute(select(WebhookEvent.type, WebhookEvent.payload))
        ]
    )
    assert sorted(hooks) == [
        ("meeting.cancelled", "c"),
        ("meeting.created", "a"),
        ("meeting.created", "b"),
        ("meeting.created", "c"),
        ("meeting.updated", "a"),
        ("meeting.updated", "b"),
    ]
    page = services.db.run(lambda s: store.meeting_timeline(s, cal.user, "contact", bob))
    assert {(i.meeting.uid, i.meeting.status) for i in page.items} == {
        ("a", "confirmed"),
        ("b", "confirmed"),
        ("c", "cancelled"),
    }


async def test_forgotten_sync_token_lists_again_without_duplicates(
    cal: Cal, world: World, services: Services
) -> None:
    world.contact("bob@customer.test")
    org = ORG.format(me=cal.email)
    cal.put("a", event("X", ":20270305T100000Z", ":20270305T110000Z", org, BOB))
    cal.put("b", event("X", ":20270306T100000Z", ":20270306T110000Z", org, BOB))
    await cal.sync()
    # Meanwhile another client deletes "b"; then the server forgets our token.
    cal.other_client_object("b").delete()
    services.db.run(
        lambda s: s.execute(
            update(CalendarRow).values(sync_token="http://radicale.org/ns/sync/forgotten")
        )
    )

    again = await cal.sync()

    assert again.full_listings == 1
    assert (again.fetched, again.stored, again.cancelled) == (0, 0, 1)
    assert services.db.run(lambda s: s.scalar(select(func.count()).select_from(CalendarEvent))) == 2
    assert events_by_uid(services)["b"].status == "cancelled"
    token = services.db.run(lambda s: s.scalar(select(CalendarRow.sync_token)))
    assert token and "forgotten" not in token
    assert (await cal.sync()).full_listings == 0


async def test_auto_create_makes_contacts_of_people_not_rooms_or_automated_invites(
    cal: Cal, services: Services
) -> None:
    org = ORG.format(me=cal.email)
    cal.put(
        "kickoff",
        event(
            "X",
            ":20270305T100000Z",
            ":20270305T110000Z",
            org,
            "ATTENDEE;CN=New Person:mailto:new@prospect.test",
            "ATTENDEE;CUTYPE=ROOM;CN=Room 1:mailto:room1@example-rooms.test",
        ),
    )
    cal.put(
        "webinar",
        event(
            "X",
            ":20270306T100000Z",
            ":20270306T110000Z",
            "ORGANIZER:mailto:no-reply@webinars.test",
            f"ATTENDEE:mailto:{cal.email}",
            "ATTENDEE:mailto:other@webinars.test",
        ),
    )

    await cal.sync(auto_create=True)

    emails = services.db.run(lambda s: set(s.scalars(select(ContactEmail.email))))
    assert emails == {"new@prospect.test"}
    assert set(events_by_uid(services)) == {"kickoff"}


async def test_wrong_password_is_recorded_on_the_account(cal: Cal, services: Services) -> None:
    from crmail.errors import AuthFailed
    from crmail.storage.calendar_models import CalendarAccount

    services.db.run(
        lambda s: s.execute(
            update(CalendarAccount).values(secret=services.box.seal({"password": "wrong"}))
        )
    )
    with pytest.raises(AuthFailed):
        await cal.sync()
    state = services.db.run(
        lambda s: s.execute(select(CalendarAccount.state, CalendarAccount.last_error_code)).one()
    )
    assert tuple(state) == ("error", "auth_failed")


async def test_the_loop_syncs_every_account_and_lists_calendars_once_an_hour(
    cal: Cal, world: World, services: Services
) -> None:
    world.contact("bob@customer.test")
    org = ORG.format(me=cal.email)
    cal.put("a", event("X", ":20270305T100000Z", ":20270305T110000Z", org, BOB))
    loop = CalendarSync(services.db, services.box, OPTIONS)

    await loop.run_once()
    assert set(events_by_uid(services)) == {"a"}

    # A calendar made now is found by the next hourly listing, not by every round.
    cal.calendar.client.principal().make_calendar(name="Later", cal_id="later")
    await loop.run_once()
    names = services.db.run(lambda s: sorted(s.scalars(select(CalendarRow.name))))
    assert names == ["Work"]
    loop._discovered.clear()
    await loop.run_once()
    names = services.db.run(lambda s: sorted(s.scalars(select(CalendarRow.name))))
    assert names == ["Later", "Work"]


async def test_a_meeting_in_two_teammates_calendars_is_stored_once(
    services: Services, world: World, radicale: Radicale
) -> None:
    world.contact("bob@customer.test")
    first, second = Cal(services, world, radicale), Cal(services, world, radicale)
    for c in (first, second):
        c.put(
            "shared",
            event("X", ":20270305T100000Z", ":20270305T110000Z", ORG.format(me=first.email), BOB),
        )
        await c.sync()

    assert services.db.run(lambda s: s.scalar(select(func.count()).select_from(CalendarEvent))) == 1
    for c in (first, second):
        upcoming = services.db.run(lambda s, c=c: store.upcoming(s, c.user, NOW))
        assert [u.meeting.uid for u in upcoming] == ["shared"]


def test_one_process_at_a_time_runs_the_calendar_loop(services: Services) -> None:
    from crmail.storage.calendar_lock import CalendarLoopLock
    from crmail.storage.db import Database

    if services.db.is_sqlite:
        pytest.skip("one process per SQLite file: the lock is PostgreSQL's")
    # Another process: its own engine and connections on the same database.
    other_db = Database(services.settings.database_url)
    mine, theirs = CalendarLoopLock(services.db), CalendarLoopLock(other_db)
    try:
        assert mine.acquire() is True
        assert mine.acquire() is True  # still held
        assert theirs.acquire() is False
        mine.release()  # a stop (or a dead process's closed connection) frees it
        assert theirs.acquire() is True
        assert mine.acquire() is False
    finally:
        mine.release()
        theirs.release()
        other_db.close()
