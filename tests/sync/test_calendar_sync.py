"""Calendar sync against a real Radicale and the fake Google Calendar API: scope and
links, recurrence, time zones, incremental rounds (sync-collection, syncToken), and
recovery from a forgotten sync token.

Every test taking ``cal`` runs once per provider. "Another client" is a plain
``caldav`` client writing to the same calendar, or Google's own app (the fake's
controls, fed the same VCALENDAR as Google items).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import caldav
import icalendar
import pytest
from sqlalchemy import func, select, update

from crmail.providers.calendar_port import CalendarScopeMissing
from crmail.providers.oauth import TokenKeeper
from crmail.services import Services
from crmail.storage import accounts
from crmail.storage import calendar as store
from crmail.storage.calendar_models import (
    CalendarAccount,
    CalendarEvent,
    CalendarRow,
    EventLink,
    EventOccurrence,
)
from crmail.storage.crm import UserInfo
from crmail.storage.models import ContactEmail, WebhookEndpoint, WebhookEvent
from crmail.sync.calendar import AccountRound, CalendarOptions, CalendarSync, sync_account
from crmail.sync.meetings import MeetingRequest, MeetingResult, cancel, reschedule, schedule
from crmail.sync.oauth import DatabaseTokenStore
from tests.factories import World, new_world
from tests.fakes.gcal import FakeGoogleCalendar, _event_id, items_from_ics
from tests.fakes.gmail import FakeGmail
from tests.fakes.graph import FakeGraph
from tests.fakes.graph_calendar import FakeGraphCalendar
from tests.fakes.graph_calendar import items_from_ics as graph_items
from tests.fakes.server import LoopbackServer
from tests.servers.radicale import Radicale

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
OPTIONS = CalendarOptions(allow_plain_http=True, clock=lambda: NOW)
_logins = itertools.count(1)


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    with Radicale() as server:
        yield server


@dataclass
class GoogleApi:
    gmail: FakeGmail
    calendar: FakeGoogleCalendar
    url: str


@pytest.fixture(scope="module")
def google_api() -> Iterator[GoogleApi]:
    gmail = FakeGmail()
    calendar = FakeGoogleCalendar(gmail)
    with LoopbackServer(gmail.app) as server:
        yield GoogleApi(gmail, calendar, server.url)


@dataclass
class GraphApi:
    graph: FakeGraph
    calendar: FakeGraphCalendar
    url: str


@pytest.fixture(scope="module")
def graph_api() -> Iterator[GraphApi]:
    graph = FakeGraph()
    calendar = FakeGraphCalendar(graph)
    with LoopbackServer(graph.app) as server:
        yield GraphApi(graph, calendar, f"{server.url}/v1.0")


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


class Cal:
    """A user's calendar on Radicale, the CRM's calendar account for it, and another
    client (plain caldav) to change it behind the CRM's back."""

    provider = "caldav"

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

        self.options = OPTIONS

    def put(self, uid: str, body: str) -> None:
        self.calendar.save_event(vcal(uid, body))

    def delete(self, uid: str) -> None:
        self.calendar.get_event_by_uid(uid).delete()

    def server_forgets_tokens(self) -> None:
        """Radicale forgets nothing by itself: the test stores a token it never gave."""
        self.services.db.run(
            lambda s: s.execute(
                update(CalendarRow).values(sync_token="http://radicale.org/ns/sync/forgotten")
            )
        )

    async def sync(self, **kw: Any) -> AccountRound:
        job = self.services.db.run(lambda s: store.job_for(s, self.user, self.account_id))
        if kw:
            job = replace(job, **kw)
        return await sync_account(self.services.db, self.services.box, job, self.options)


class _GrantCal(Cal):
    """A calendar on a fake API, reached through the calendar account crmail makes for
    a mail account's OAuth grant."""

    def _connect(
        self, services: Services, world: World, token: str, provider: str, oauth_provider: str
    ) -> TokenKeeper:
        """The mail account holding the grant, and its calendar account."""
        self.services = services
        self.user_id = world.user(self.email, "Rep")
        self.user = UserInfo(self.user_id, world.workspace_id, self.email, "Rep", "member")
        secret = services.box.seal(
            {
                "oauth2_token": token,
                "oauth2_refresh_token": "refresh",
                "oauth2_expires_at": repr(time.time() + 86400),
            }
        )
        services.db.run(
            lambda s: accounts.create_account(
                s,
                workspace_id=world.workspace_id,
                user_id=self.user_id,
                email=self.email,
                provider=provider,
                settings={"history_days": 30, "oauth_provider": oauth_provider},
                secret=secret,
            )
        )
        services.db.run(lambda s: store.ensure_grant_calendars(s, services.box))
        self.account_id = services.db.run(lambda s: store.list_accounts(s, self.user)[0].id)

        def no_refresh(key: str) -> Any:
            raise AssertionError("the stored access token is still valid")

        return TokenKeeper(DatabaseTokenStore(services.db, services.box), no_refresh)


class GoogleCal(_GrantCal):
    """A Gmail user's primary Google calendar on the fake API."""

    provider = "google"

    def __init__(self, services: Services, world: World, api: GoogleApi) -> None:
        n = next(_logins)
        self.email = f"grep{n}@example.test"
        token = f"gcal-token-{n}"
        api.gmail.add_mailbox(self.email, token=token)
        api.calendar.add_calendar(self.email, "primary", "Work")
        self.api = api
        keeper = self._connect(services, world, token, "gmail", "google")
        self.options = replace(OPTIONS, google_api_url=api.url, tokens=keeper)

    def put(self, uid: str, body: str) -> None:
        for item in items_from_ics(vcal(uid, body)):
            self.api.calendar.put(self.email, item)

    def delete(self, uid: str) -> None:
        self.api.calendar.remove(self.email, _event_id(uid))

    def server_forgets_tokens(self) -> None:
        self.api.calendar.invalidate_tokens()


class GraphCal(_GrantCal):
    """A Microsoft 365 user's Outlook calendar on the fake Graph."""

    provider = "graph"

    def __init__(self, services: Services, world: World, api: GraphApi) -> None:
        n = next(_logins)
        self.email = f"mrep{n}@example.test"
        token = f"graph-token-{n}"
        api.graph.add_mailbox(self.email, token=token)
        self.api = api
        keeper = self._connect(services, world, token, "graph", "microsoft")
        self.options = replace(OPTIONS, graph_api_url=api.url, tokens=keeper)

    def put(self, uid: str, body: str) -> None:
        for item in graph_items(vcal(uid, body), NOW):
            self.api.calendar.put(self.email, item)

    def delete(self, uid: str) -> None:
        self.api.calendar.remove_uid(self.email, uid)

    def server_forgets_tokens(self) -> None:
        self.api.calendar.expire_delta()


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


PROVIDERS = ("caldav", "google", "graph")


@pytest.fixture(params=PROVIDERS)
def make_cal(request: pytest.FixtureRequest, services: Services, world: World) -> Callable[[], Cal]:
    """Makes a user's calendar on the provider under test (CalDAV or Google)."""
    if request.param == "google":
        api = request.getfixturevalue("google_api")
        return lambda: GoogleCal(services, world, api)
    if request.param == "graph":
        graph = request.getfixturevalue("graph_api")
        return lambda: GraphCal(services, world, graph)
    server = request.getfixturevalue("radicale")
    return lambda: Cal(services, world, server)


@pytest.fixture
def cal(make_cal: Callable[[], Cal]) -> Cal:
    return make_cal()


@pytest.fixture
def caldav_cal(services: Services, world: World, radicale: Radicale) -> Cal:
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
    skipped = {"no_known_contact": 1, "only_workspace_users": 1, "no_participants": 1}
    if cal.provider != "graph":  # Graph's calendarView lists the window only
        skipped["outside_window"] = 1
    assert result.skipped == skipped
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
    expected = [
        (utc(2027, 3, 15, 8), utc(2027, 3, 15, 9), "confirmed", "Europe/Berlin"),
        (utc(2027, 3, 22, 13), utc(2027, 3, 22, 14), "confirmed", "Europe/Berlin"),
        (utc(2027, 4, 5, 7), utc(2027, 4, 5, 8), "cancelled", "Europe/Berlin"),
        (utc(2027, 4, 12, 7), utc(2027, 4, 12, 8), "confirmed", "Europe/Berlin"),
    ]
    if cal.provider == "graph":
        # Graph lists instances, and no cancelled one: each instance is stored as the
        # series' UID + its RECURRENCE-ID; 5 April simply is not there.
        assert occurrences(services, "weekly") == [expected[0], expected[1], expected[3]]
        upcoming = services.db.run(lambda s: store.upcoming(s, cal.user, NOW))
        assert [(u.starts_at.day, u.status) for u in upcoming] == [
            (15, "confirmed"),
            (22, "confirmed"),
            (12, "confirmed"),
        ]
        return
    assert occurrences(services, "weekly") == expected
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
    cal.delete("c")

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
    cal.delete("b")
    cal.server_forgets_tokens()

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


async def test_wrong_password_is_recorded_on_the_account(
    caldav_cal: Cal, services: Services
) -> None:
    cal = caldav_cal
    from crmail.errors import AuthFailed

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
    caldav_cal: Cal, world: World, services: Services
) -> None:
    cal = caldav_cal
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
    services: Services, world: World, make_cal: Callable[[], Cal]
) -> None:
    world.contact("bob@customer.test")
    first, second = make_cal(), make_cal()
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


DEMO_START = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)


async def _schedule_demo_call(services: Services, cal: Cal, contact_id: int) -> MeetingResult:
    """A 45-minute meeting with the contact, 10 March 2027 09:00 UTC, in Berlin time."""
    await cal.sync()
    return await schedule(
        services.db,
        services.box,
        cal.options,
        cal.user,
        MeetingRequest(
            "Demo call",
            DEMO_START,
            DEMO_START + timedelta(minutes=45),
            contact_ids=(contact_id,),
            tzid="Europe/Berlin",
        ),
    )


async def _acceptance_arrives(services: Services, cal: Cal, meeting_id: int) -> None:
    """The next round brings bob's answer, and no second event."""
    await cal.sync()
    meeting = services.db.run(lambda s: store.get_meeting(s, cal.user, meeting_id))
    assert [(a.email, a.partstat) for a in meeting.attendees] == [("bob@customer.test", "ACCEPTED")]
    assert services.db.run(lambda s: s.scalar(select(func.count()).select_from(CalendarEvent))) == 1


async def _move_by_a_day(services: Services, cal: Cal, meeting_id: int) -> None:
    later = DEMO_START + timedelta(days=1)
    await reschedule(
        services.db,
        services.box,
        cal.options,
        cal.user,
        meeting_id,
        later,
        later + timedelta(minutes=45),
    )


async def _cancelled_after_a_round(services: Services, cal: Cal, meeting_id: int) -> None:
    await cal.sync()
    meeting = services.db.run(lambda s: store.get_meeting(s, cal.user, meeting_id))
    assert meeting.status == "cancelled"


async def test_meeting_from_the_crm_in_google_calendar_invites_through_google_and_takes_answers(
    services: Services, world: World, google_api: GoogleApi
) -> None:
    cal = GoogleCal(services, world, google_api)
    bob = world.contact("bob@customer.test", name="Bob Buyer")
    made = await _schedule_demo_call(services, cal, bob)

    # In the Google calendar with the attendee; Google sent the invitation, not crmail.
    [seen] = google_api.calendar.events(cal.email)
    assert seen["iCalUID"] == made.meeting.uid
    assert [a["email"] for a in seen["attendees"]] == ["bob@customer.test"]
    assert seen["start"]["timeZone"] == "Europe/Berlin"
    assert made.message_id is None
    assert [(s.kind, s.to) for s in google_api.calendar.sent if s.event_id == seen["id"]] == [
        ("invitation", ("bob@customer.test",))
    ]
    page = services.db.run(lambda s: store.meeting_timeline(s, cal.user, "contact", bob))
    assert [i.meeting.id for i in page.items] == [made.meeting.id]

    # Bob accepts in his own calendar.
    google_api.calendar.respond(cal.email, seen["id"], "bob@customer.test", "accepted")
    await _acceptance_arrives(services, cal, made.meeting.id)

    await _move_by_a_day(services, cal, made.meeting.id)
    [moved] = google_api.calendar.events(cal.email)
    assert moved["start"]["dateTime"].startswith("2027-03-11T10:00:00")
    await cancel(services.db, services.box, cal.options, cal.user, made.meeting.id)
    assert google_api.calendar.events(cal.email) == []
    assert [s.kind for s in google_api.calendar.sent if s.event_id == seen["id"]] == [
        "invitation",
        "update",
        "cancellation",
    ]
    await _cancelled_after_a_round(services, cal, made.meeting.id)


async def _scope_refused(services: Services, cal: Cal) -> str:
    """A round refused for want of the calendar scope: the error recorded in words."""
    with pytest.raises(CalendarScopeMissing):
        await cal.sync()
    error, code = services.db.run(
        lambda s: s.execute(
            select(CalendarAccount.last_error, CalendarAccount.last_error_code).where(
                CalendarAccount.id == cal.account_id
            )
        ).one()
    )
    assert code == "calendar_scope_missing"
    return str(error)


async def test_a_google_grant_without_the_calendar_scope_says_so_and_mail_is_untouched(
    services: Services, world: World, google_api: GoogleApi
) -> None:
    from crmail.storage.models import MailAccount

    cal = GoogleCal(services, world, google_api)
    google_api.gmail.fail(
        403, path_contains="/calendar/v3/", reason="insufficientPermissions", times=1
    )

    assert "Reconnect the account with Google" in await _scope_refused(services, cal)
    mail_state = services.db.run(lambda s: s.scalar(select(MailAccount.state)))
    assert mail_state != "auth_error"


async def test_meeting_from_the_crm_in_outlook_invites_through_exchange_and_takes_answers(
    services: Services, world: World, graph_api: GraphApi
) -> None:
    cal = GraphCal(services, world, graph_api)
    bob = world.contact("bob@customer.test", name="Bob Buyer")
    made = await _schedule_demo_call(services, cal, bob)

    # In the Outlook calendar with the attendee; Exchange sent the invitation, and the
    # meeting is stored under Graph's own UID, so the next round finds no new event.
    [seen] = graph_api.calendar.events(cal.email)
    assert made.meeting.uid == seen["uid"]
    assert [a["emailAddress"]["address"] for a in seen["attendees"]] == ["bob@customer.test"]
    assert seen["start"] == {"dateTime": "2027-03-10T10:00:00", "timeZone": "Europe/Berlin"}
    assert made.message_id is None
    assert [(s.kind, s.to) for s in graph_api.calendar.sent if s.event_id == seen["id"]] == [
        ("invitation", ("bob@customer.test",))
    ]

    graph_api.calendar.respond(cal.email, seen["id"], "bob@customer.test", "accepted")
    await _acceptance_arrives(services, cal, made.meeting.id)

    await _move_by_a_day(services, cal, made.meeting.id)
    [moved] = graph_api.calendar.events(cal.email)
    assert moved["start"]["dateTime"] == "2027-03-11T10:00:00"
    await cancel(services.db, services.box, cal.options, cal.user, made.meeting.id)
    assert graph_api.calendar.events(cal.email) == []
    assert [s.kind for s in graph_api.calendar.sent if s.event_id == seen["id"]] == [
        "invitation",
        "update",
        "cancellation",
    ]
    await _cancelled_after_a_round(services, cal, made.meeting.id)
    assert services.db.run(lambda s: s.scalar(select(func.count()).select_from(CalendarEvent))) == 1


async def test_a_grant_calendar_removed_in_settings_stays_off(
    services: Services, world: World, google_api: GoogleApi
) -> None:
    cal = GoogleCal(services, world, google_api)
    await cal.sync()

    services.db.run(lambda s: store.delete_account(s, cal.user, cal.account_id))

    assert services.db.run(lambda s: store.ensure_grant_calendars(s, services.box)) == 0
    assert [j.account_id for j in services.db.run(store.sync_jobs)] == []
    [view] = services.db.run(lambda s: store.list_accounts(s, cal.user))
    assert (view.provider, view.state) == ("google", "disconnected")


async def test_a_graph_grant_without_the_calendar_scope_says_so(
    services: Services, world: World, graph_api: GraphApi
) -> None:

    cal = GraphCal(services, world, graph_api)
    graph_api.graph.fail(403, path_contains="/calendarView/", code="ErrorAccessDenied")

    assert "Reconnect the account with Microsoft" in await _scope_refused(services, cal)
