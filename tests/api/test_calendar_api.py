"""The calendar API against a real Radicale: connect (checked by a first sync round),
calendars, scheduling a meeting from a contact, the contact's meetings, upcoming
meetings, and the meeting.created webhook."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import caldav
import pytest
from sqlalchemy import select

from crmail.storage.calendar_models import CalendarAccount
from crmail.storage.models import WebhookEvent
from tests.api.conftest import World
from tests.servers.radicale import Radicale


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    with Radicale() as server:
        yield server


@pytest.fixture
def cal_world(world: World, radicale: Radicale) -> World:
    # Radicale speaks plain http on loopback: allowed as CRMAIL_CALENDAR_ALLOW_HTTP would.
    world.services.settings = replace(world.services.settings, calendar_allow_http=True)
    radicale.add_user("owner", "pw")
    client = caldav.DAVClient(url=radicale.url, username="owner", password="pw", require_tls=False)
    with contextlib.suppress(Exception):  # made by an earlier test of this module
        client.principal().make_calendar(name="Work", cal_id="work")
    return world


def test_connect_schedule_and_read_meetings(cal_world: World, radicale: Radicale) -> None:
    w, h = cal_world, cal_world.owner.headers
    c = w.client
    hook = c.post(
        "/api/webhooks",
        json={"url": "https://hooks.example.com/", "events": ["meeting.created"]},
        headers=w.admin.headers,
    )
    assert hook.status_code == 201, hook.text
    w.mailbox(w.owner)  # the invitations go out through the owner's mailbox
    ann = c.post(
        "/api/contacts", json={"name": "Ann", "emails": ["ann@client.test"]}, headers=h
    ).json()["id"]

    r = c.post(
        "/api/calendar/accounts",
        json={"url": radicale.url, "username": "owner", "password": "pw"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["state"] == "active" and "password" not in r.text
    cals = c.get(f"/api/calendar/accounts/{account['id']}/calendars", headers=h).json()
    assert [(x["name"], x["selected"]) for x in cals] == [("Work", True)]

    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    made = c.post(
        "/api/meetings",
        json={
            "summary": "Kickoff",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "contact_ids": [ann],
        },
        headers=h,
    )
    assert made.status_code == 201, made.text
    meeting = made.json()
    assert meeting["invitation_message_id"] is not None
    assert [a["email"] for a in meeting["meeting"]["attendees"]] == ["ann@client.test"]

    timeline = c.get(f"/api/contacts/{ann}/meetings", headers=h).json()
    assert [i["meeting"]["summary"] for i in timeline["items"]] == ["Kickoff"]
    # The team sees meetings on the contact; the calendar account stays the owner's.
    mate = c.get(f"/api/contacts/{ann}/meetings", headers=w.teammate.headers).json()
    assert len(mate["items"]) == 1
    assert (
        c.get(f"/api/calendar/accounts/{account['id']}", headers=w.admin.headers).status_code == 404
    )
    upcoming = c.get("/api/meetings/upcoming", headers=h).json()
    assert [u["meeting"]["id"] for u in upcoming] == [meeting["meeting"]["id"]]
    # The contact's activity: the meeting (in two days) above the invitation mail (now).
    activity = c.get(f"/api/contacts/{ann}/activity", headers=h).json()
    assert [
        (i["kind"], (i["meeting"] or {}).get("summary"), (i["message"] or {}).get("subject"))
        for i in activity["items"]
    ] == [("meeting", "Kickoff", None), ("mail", None, "Invitation: Kickoff")]
    first = c.get(f"/api/contacts/{ann}/activity", params={"limit": 1}, headers=h).json()
    rest = c.get(
        f"/api/contacts/{ann}/activity",
        params={"limit": 1, "before": first["next_before"]},
        headers=h,
    ).json()
    assert [i["kind"] for i in first["items"] + rest["items"]] == ["meeting", "mail"]
    assert rest["next_before"] is None
    bad = c.get(f"/api/contacts/{ann}/activity", params={"before": "nope"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["code"]

    types = w.services.db.run(lambda s: list(s.scalars(select(WebhookEvent.type))))
    assert types.count("meeting.created") == 1


def test_a_refused_login_is_a_clear_error_and_keeps_nothing(
    cal_world: World, radicale: Radicale
) -> None:
    r = cal_world.client.post(
        "/api/calendar/accounts",
        json={"url": radicale.url, "username": "owner", "password": "wrong"},
        headers=cal_world.owner.headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "auth_failed"
    left = cal_world.services.db.run(lambda s: list(s.scalars(select(CalendarAccount.id))))
    assert left == []


def test_plain_http_is_refused_unless_allowed(world: World, radicale: Radicale) -> None:
    r = world.client.post(
        "/api/calendar/accounts",
        json={"url": radicale.url, "username": "owner", "password": "pw"},
        headers=world.owner.headers,
    )
    assert r.status_code == 422
    assert "https" in r.json()["error"]["message"]
