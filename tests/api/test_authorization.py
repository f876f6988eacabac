"""Authorization matrix: every route of the app, for every kind of caller.

The table must cover every route (a new route without a row fails the test), so
nobody can add an endpoint without deciding who may call it. Another workspace's ids
must answer exactly what a nonexistent id answers: 404 ``not_found``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from crmail.sync import connect
from tests.api.conftest import Actor, World
from tests.api.test_mail_routes import T0, raw_mail

ACTORS = ("owner", "teammate", "admin", "other", "anonymous")


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    #: (path, json body) from the ids of the world's objects
    request: Callable[[dict[str, int]], tuple[str, Any]]
    #: expected status for owner, teammate, admin, other workspace; anonymous gets 401
    expect: tuple[int, int, int, int]
    anonymous: int = 401


def row(
    method: str,
    route: str,
    expect: tuple[int, int, int, int],
    body: Any = None,
    query: str = "",
    anonymous: int = 401,
    path: str | None = None,
) -> Row:
    """``path`` fills the route differently (e.g. ``{sent_id}`` for ``{message_id}``); string
    values "{name}" in a dict body become that id."""

    def request(ids: dict[str, int]) -> tuple[str, Any]:
        filled = body
        if isinstance(body, dict):
            filled = {
                k: ids[v[1:-1]] if isinstance(v, str) and v[1:-1] in ids else v
                for k, v in body.items()
            }
        return (path or route).format(**ids) + query.format(**ids), filled

    return Row(method, route, request, expect, anonymous)


ALL_OK, WS_ONLY = (200, 200, 200, 200), (200, 200, 200, 404)

# Order matters only at the end: the DELETE runs last.
TABLE = [
    row("GET", "/healthz", ALL_OK, anonymous=200),
    # Pub/Sub cannot send a crmail token: the secret in the path is the authentication,
    # and a wrong one (here: none is configured) is "not found" for everyone.
    row(
        "POST",
        "/api/push/gmail/{token}",
        (404,) * 4,
        {"message": {"data": ""}},
        anonymous=404,
        path="/api/push/gmail/guessed",
    ),
    # A push signed by Google (its bearer token checked): with no push service account
    # configured there is no such endpoint, for everyone alike.
    row("POST", "/api/push/gmail", (404,) * 4, {"message": {"data": ""}}, anonymous=404),
    # Graph's notifications carry no crmail credential: anything unknown is accepted
    # and ignored (202) the same for everyone, so nothing is learned from the answer.
    row(
        "POST",
        "/api/push/graph",
        (202,) * 4,
        {"value": [{"subscriptionId": "guessed", "clientState": "guessed"}]},
        anonymous=202,
    ),
    row("GET", "/api/me", ALL_OK),
    # Which one-click sign-ins the server offers is no secret from a signed-in member;
    # starting one makes a sign-in for the caller alone (here: none is configured).
    row("GET", "/api/oauth/providers", ALL_OK),
    row(
        "POST",
        "/api/accounts/oauth/{provider}/start",
        (422,) * 4,
        path="/api/accounts/oauth/google/start",
    ),
    # A user's tokens are their own: another's token id is "not found", even for an admin.
    row("GET", "/api/me/tokens", ALL_OK),
    row("POST", "/api/me/tokens", (201,) * 4, {"name": "ci", "expires_in_days": 30}),
    row("POST", "/api/me/tokens/{token_id}/rotate", (201, 404, 404, 404)),
    row("DELETE", "/api/me/tokens/{token_id}", (204, 404, 404, 404)),
    # The world's users have no web password: there is none to change.
    row(
        "POST",
        "/api/me/password",
        (422,) * 4,
        {"current_password": "x", "new_password": "long enough"},
    ),
    row("GET", "/api/users", (403, 403, 200, 200)),
    row(
        "POST",
        "/api/users/{user_id}/disable",
        (403, 403, 200, 404),
        path="/api/users/{mate_id}/disable",
    ),
    row(
        "POST",
        "/api/users/{user_id}/enable",
        (403, 403, 200, 404),
        path="/api/users/{mate_id}/enable",
    ),
    row("POST", "/api/contacts", (201,) * 4, {"name": "N", "emails": ["new@x.test"]}),
    row("GET", "/api/contacts", ALL_OK),
    row("GET", "/api/contacts/{contact_id}", WS_ONLY),
    row("PATCH", "/api/contacts/{contact_id}", WS_ONLY, {"name": "Renamed"}),
    row("GET", "/api/contacts/{contact_id}/timeline", WS_ONLY),
    row("POST", "/api/leads", (201,) * 4, {"name": "L"}),
    row("GET", "/api/leads", ALL_OK),
    row("GET", "/api/leads/{lead_id}", WS_ONLY),
    row("PATCH", "/api/leads/{lead_id}", WS_ONLY, {"name": "Renamed"}),
    row("GET", "/api/leads/{lead_id}/timeline", WS_ONLY),
    row("POST", "/api/deals", (201,) * 4, {"title": "D"}),
    row("GET", "/api/deals", ALL_OK),
    row("GET", "/api/deals/{deal_id}", WS_ONLY),
    row("PATCH", "/api/deals/{deal_id}", WS_ONLY, {"status": "won"}),
    row("GET", "/api/deals/{deal_id}/timeline", WS_ONLY),
    row("GET", "/api/providers", ALL_OK),
    row(
        "POST",
        "/api/accounts/test",
        ALL_OK,
        {"provider": "gmail", "email": "a@b.test", "password": "p"},
    ),
    row(
        "POST",
        "/api/accounts",
        (201,) * 4,
        {"provider": "gmail", "email": "a@b.test", "password": "p"},
    ),
    row("GET", "/api/accounts", ALL_OK),
    row("GET", "/api/accounts/{account_id}", (200, 404, 200, 404)),
    row("GET", "/api/accounts/{account_id}/status", (200, 404, 200, 404)),
    # Changing a mailbox's connection is its owner's alone; an admin may look, not change.
    row("PATCH", "/api/accounts/{account_id}", (200, 404, 403, 404), {"password": "new-pw"}),
    row("PATCH", "/api/accounts/{account_id}", (200, 404, 403, 404), {"mode": "one_way"}),
    # The auto-create blocklist is the workspace's: everyone reads it, admins set it.
    row("GET", "/api/workspace/auto-create-blocklist", ALL_OK),
    row(
        "PUT",
        "/api/workspace/auto-create-blocklist",
        (403, 403, 200, 200),
        {"entries": ["@rival.test"]},
    ),
    row("POST", "/api/accounts/{account_id}/disconnect", (200, 404, 403, 404)),
    row("POST", "/api/accounts/{account_id}/reconnect", (200, 404, 403, 404), {}),
    row("GET", "/api/inbox", ALL_OK),
    row("GET", "/api/inbox", WS_ONLY, query="?user_id={owner_id}"),
    row("GET", "/api/messages/{message_id}", WS_ONLY),
    row("GET", "/api/messages/{message_id}/raw", WS_ONLY),
    row("GET", "/api/messages/{private_id}", (200, 404, 404, 404)),
    row("GET", "/api/messages/{private_id}/raw", (200, 404, 404, 404)),
    row("POST", "/api/webhooks", (403, 403, 201, 201), {"url": "https://hooks.example.com/"}),
    row("GET", "/api/webhooks", (403, 403, 200, 200)),
    row("GET", "/api/webhooks/{webhook_id}", (403, 403, 200, 404)),
    row("PATCH", "/api/webhooks/{webhook_id}", (403, 403, 200, 404), {"active": True}),
    row("GET", "/api/webhooks/{webhook_id}/deliveries", (403, 403, 200, 404)),
    row("POST", "/api/webhooks/{webhook_id}/test", (403, 403, 202, 404)),
    # Everyone has connected a mailbox by now (POST /api/accounts above); a teammate
    # may reply, from their own mailbox, to mail on the workspace's timelines.
    row("GET", "/api/sender", ALL_OK),
    row("POST", "/api/messages", (202,) * 4, {"to": ["ann@client.test"], "text": "hi"}),
    row("POST", "/api/messages/{message_id}/reply", (202, 202, 202, 404), {"text": "re"}),
    row(
        "POST",
        "/api/messages/{message_id}/retry-send",
        (422, 404, 404, 404),
        path="/api/messages/{sent_id}/retry-send",
    ),
    row(
        "POST",
        "/api/messages/{message_id}/links",
        (201, 201, 201, 404),
        {"subject_type": "deal", "subject_id": "{deal_id}"},
    ),
    row(
        "DELETE",
        "/api/messages/{message_id}/links/{subject_type}/{subject_id}",
        (200, 200, 200, 404),
        path="/api/messages/{message_id}/links/deal/{deal_id}",
    ),
    # Acting on mail: only the owner of the copy; a teammate who sees it on a timeline
    # (admins included) is refused, another workspace does not see it at all.
    row("POST", "/api/threads/{thread_id}/read", (202, 403, 403, 404), {"read": True}),
    row(
        "POST",
        "/api/threads/{thread_id}/snooze",
        (202, 403, 403, 404),
        {"until": "2999-01-01T00:00:00Z"},
    ),
    row("POST", "/api/threads/{thread_id}/done", (202, 403, 403, 404)),
    row("POST", "/api/messages/{message_id}/move", (202, 403, 403, 404), {"folder": "Archive"}),
    row("DELETE", "/api/messages/{message_id}", (202, 403, 403, 404)),
    # Calendar accounts are their user's own (an admin neither sees nor changes them);
    # meetings on a record are the team's, but only the organizer's calendar changes.
    row("GET", "/api/calendar/presets", ALL_OK),
    row("POST", "/api/calendar/accounts", (422,) * 4, {"username": "u", "password": "p"}),
    row("GET", "/api/calendar/accounts", ALL_OK),
    row(
        "GET",
        "/api/calendar/accounts/{account_id}",
        (200, 404, 404, 404),
        path="/api/calendar/accounts/{calendar_account_id}",
    ),
    row(
        "GET",
        "/api/calendar/accounts/{account_id}/calendars",
        (200, 404, 404, 404),
        path="/api/calendar/accounts/{calendar_account_id}/calendars",
    ),
    row(
        "PATCH",
        "/api/calendar/accounts/{account_id}/calendars/{calendar_id}",
        (200, 404, 404, 404),
        {"selected": True},
        path="/api/calendar/accounts/{calendar_account_id}/calendars/{calendar_id}",
    ),
    row("GET", "/api/meetings/upcoming", ALL_OK),
    row("GET", "/api/meetings/{meeting_id}", WS_ONLY),
    row("GET", "/api/contacts/{contact_id}/meetings", WS_ONLY),
    row("GET", "/api/leads/{lead_id}/meetings", WS_ONLY),
    row("GET", "/api/deals/{deal_id}/meetings", WS_ONLY),
    row("GET", "/api/contacts/{contact_id}/activity", WS_ONLY),
    row("GET", "/api/leads/{lead_id}/activity", WS_ONLY),
    row("GET", "/api/deals/{deal_id}/activity", WS_ONLY),
    row(
        "POST",
        "/api/meetings",
        (422,) * 4,
        {"summary": "x", "starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T09:00:00Z"},
    ),
    # The world's meeting is cancelled already: the owner gets past every check to 422.
    row(
        "POST",
        "/api/meetings/{meeting_id}/reschedule",
        (422, 422, 422, 404),
        {"starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T11:00:00Z"},
    ),
    row("POST", "/api/meetings/{meeting_id}/cancel", (422, 422, 422, 404)),
    row(
        "DELETE",
        "/api/calendar/accounts/{account_id}",
        (204, 404, 404, 404),
        path="/api/calendar/accounts/{calendar_account_id}",
    ),
    row("DELETE", "/api/accounts/{account_id}", (204, 404, 403, 404)),
    row("DELETE", "/api/webhooks/{webhook_id}", (403, 403, 204, 404)),
]


def test_table_covers_every_route(world: World) -> None:
    # Walked through the OpenAPI document: it lists every route with its methods, and no
    # route of ours is hidden from it.
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {(m.upper(), path) for path, ops in paths.items() for m in ops}
    covered = {(r.method, r.route.replace("{private_id}", "{message_id}")) for r in TABLE}
    assert routes - covered == set(), "routes without an authorization row"
    assert covered - routes == set(), "rows for routes that do not exist"
    # a sanity check that the walk saw the whole app: a route of every router
    assert {
        ("GET", "/api/me"),
        ("GET", "/api/inbox"),
        ("PATCH", "/api/accounts/{account_id}"),
        ("POST", "/api/push/graph"),
        ("POST", "/api/meetings"),
        ("GET", "/api/webhooks"),
    } <= routes


def calendar_scene(world: World, contact: int) -> dict[str, int]:
    """The owner's calendar account and calendar, and a (cancelled) meeting of theirs
    with the contact: made in the database, no CalDAV server is reached."""
    from datetime import UTC, datetime

    from crmail.storage import calendar as cal_store
    from crmail.storage.calendar_models import (
        CalendarEvent,
        CalendarRow,
        EventLink,
        EventPlacement,
    )
    from crmail.storage.crm import UserInfo

    owner = world.owner

    def make(s: Any) -> dict[str, int]:
        user = UserInfo(owner.id, owner.workspace_id, owner.email, "", "member")
        account = cal_store.add_account(
            s, user, world.services.box, url="https://cal.example/", username="o", password="p"
        )
        c = CalendarRow(account_id=account.id, url="https://cal.example/o/work/", name="Work")
        s.add(c)
        when = datetime(2030, 1, 1, 10, tzinfo=UTC)
        ev = CalendarEvent(
            workspace_id=owner.workspace_id,
            uid="m1@test",
            summary="Demo",
            status="cancelled",
            starts_at=when,
            ends_at=when,
            created_by=owner.id,
        )
        s.add(ev)
        s.flush()
        s.add(EventPlacement(calendar_id=c.id, user_id=owner.id, event_id=ev.id, href="/o/m1.ics"))
        s.add(
            EventLink(
                workspace_id=owner.workspace_id,
                event_id=ev.id,
                subject_type="contact",
                subject_id=contact,
                reason="test",
                starts_at=when,
            )
        )
        return {"calendar_account_id": account.id, "calendar_id": c.id, "meeting_id": ev.id}

    return world.services.db.run(make)


@pytest.fixture
def ids(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Objects of workspace A, made by the owner; the IMAP login test is faked."""

    async def fake_test(settings: Any, *policy: Any) -> list[str]:
        return ["INBOX"]

    monkeypatch.setattr(connect, "test_connection", fake_test)
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "Initech"}, headers=h).json()["id"]
    contact = c.post(
        "/api/contacts",
        json={"name": "Ann", "emails": ["ann@client.test"], "lead_id": lead},
        headers=h,
    ).json()["id"]
    deal = c.post("/api/deals", json={"title": "Deal", "contact_ids": [contact]}, headers=h).json()[
        "id"
    ]
    box = world.mailbox(world.owner)
    message = world.deliver(box, raw_mail("ann@client.test", "owner@acme.test", "Linked", T0))
    private = world.deliver(box, raw_mail("friend@home.test", "owner@acme.test", "Private", T0))
    webhook = c.post(
        "/api/webhooks", json={"url": "https://hooks.example.com/"}, headers=world.admin.headers
    ).json()["id"]
    meeting = calendar_scene(world, contact)
    return {
        **meeting,
        "contact_id": contact,
        "lead_id": lead,
        "deal_id": deal,
        "account_id": box.account_id,
        "message_id": message,
        "private_id": private,
        "owner_id": world.owner.id,
        "mate_id": world.teammate.id,
        "token_id": c.post("/api/me/tokens", json={"name": "spare"}, headers=h).json()["id"],
        "webhook_id": webhook,
        "thread_id": c.get(f"/api/messages/{message}", headers=h).json()["thread_id"],
        "sent_id": c.post(
            "/api/messages", json={"to": ["ann@client.test"], "text": "first"}, headers=h
        ).json()["message_id"],
    }


@pytest.mark.parametrize("who", ACTORS)
def test_authorization_matrix(world: World, ids: dict[str, int], who: str) -> None:
    actor: Actor | None = None if who == "anonymous" else getattr(world, who)
    headers = actor.headers if actor else {}
    failures = []
    for r in TABLE:
        path, body = r.request(ids)
        expected = r.anonymous if actor is None else r.expect[ACTORS.index(who)]
        resp = world.client.request(r.method, path, json=body, headers=headers)
        if resp.status_code != expected:
            failures.append(
                f"{r.method} {path}: {resp.status_code} != {expected}: {resp.text[:200]}"
            )
            continue
        if expected >= 400:
            err = resp.json()["error"]
            want = {
                401: "unauthenticated",
                403: "forbidden",
                404: "not_found",
                422: "invalid_input",
            }[expected]
            if err["code"] != want:
                failures.append(f"{r.method} {path}: code {err['code']} != {want}")
        if who == "other" and expected == 404:
            # indistinguishable from an id that does not exist anywhere
            missing = {k: 10**9 for k in ids}
            ghost_path, _ = r.request(missing)
            ghost = world.client.request(r.method, ghost_path, json=body, headers=headers)
            if ghost.status_code != 404 or ghost.json()["error"]["code"] != "not_found":
                failures.append(
                    f"{r.method} {ghost_path}: a missing id answers {ghost.status_code}"
                )
    assert failures == []


def test_other_workspace_lists_show_nothing_of_ours(world: World, ids: dict[str, int]) -> None:
    c, h = world.client, world.other.headers
    for path in ("/api/contacts", "/api/leads", "/api/deals", "/api/accounts", "/api/inbox"):
        body = c.get(path, headers=h).json()
        assert (body["items"] if isinstance(body, dict) else body) == [], path
    assert c.get("/api/accounts?all_users=true", headers=h).json() == []
