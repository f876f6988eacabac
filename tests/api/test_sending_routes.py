"""POST /api/messages and /reply: what is refused before anything is queued, and who can
read the message once it is (issues 12 and 13). Nothing is sent here (no sync service);
tests/sync/test_send_safety.py follows messages through real SMTP and IMAP."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from sqlalchemy import func, select

from crmail.storage import outbound
from crmail.storage.models import MailAccount, OutboxAction
from tests.api.conftest import World

pytestmark = pytest.mark.db


def _send(world: World, body: dict[str, object], actor: str = "owner") -> tuple[int, dict]:  # type: ignore[type-arg]
    r = world.client.post("/api/messages", json=body, headers=getattr(world, actor).headers)
    return r.status_code, r.json()


def _queued(world: World) -> int:
    return world.services.db.run(lambda s: s.scalar(select(func.count()).select_from(OutboxAction)))


def _set_mode(world: World, account_id: int, mode: str) -> None:
    def change(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, account_id)
        a.settings = {**a.settings, "mode": mode}

    world.services.db.run(change)


# --- the author reads what they sent (issue 12) ---------------------------------------------


@pytest.mark.parametrize("mode", ["two_way", "one_way"])
def test_sent_message_is_readable_by_its_author_at_once_with_its_state(
    world: World, mode: str
) -> None:
    box = world.mailbox(world.owner)
    _set_mode(world, box.account_id, mode)
    # Not a contact: no timeline link, and no copy synced yet: only authorship shows it.
    status, body = _send(world, {"to": ["stranger@elsewhere.test"], "subject": "Hi", "text": "x"})
    assert status == 202, body
    mid = body["message_id"]

    got = world.client.get(f"/api/messages/{mid}", headers=world.owner.headers)
    assert got.status_code == 200, got.json()
    assert got.json()["send_state"] == "queued"
    assert got.json()["send_error"] is None
    assert got.json()["subject"] == "Hi"

    world.services.db.run(
        lambda s: outbound.set_send_state(s, mid, "failed", "550 5.1.1 no such user")
    )
    got = world.client.get(f"/api/messages/{mid}", headers=world.owner.headers).json()
    assert (got["send_state"], got["send_error"]) == ("failed", "550 5.1.1 no such user")
    # Still private: a teammate or another workspace does not see an unlinked message.
    for other in (world.teammate, world.admin, world.other):
        assert world.client.get(f"/api/messages/{mid}", headers=other.headers).status_code == 404


# --- one address grammar (issue 13, 2) --------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["a,injected@evil.test", 'a"b@client.test', "a b@client.test", "=?utf-8?q?a=0D=0A?=@x.test"],
)
@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
def test_invalid_address_is_422_naming_it_and_nothing_is_queued(
    world: World, field: str, address: str
) -> None:
    world.mailbox(world.owner)
    status, body = _send(world, {"to": ["ok@client.test"], field: [address], "text": "x"})
    assert status == 422, body
    assert repr(address) in body["error"]["message"]
    assert _queued(world) == 0


# --- sending limits (issue 13, 3) -------------------------------------------------------------


def test_too_many_recipients_is_422_with_the_limit(world: World) -> None:
    world.mailbox(world.owner)
    world.services.settings = dataclasses.replace(world.services.settings, max_recipients=5)
    five = {"to": [f"p{i}@client.test" for i in range(3)], "bcc": ["x@client.test", "y@c.test"]}
    assert _send(world, {**five, "text": "x"})[0] == 202
    status, body = _send(world, {**five, "cc": ["z@client.test"], "text": "x"})
    assert status == 422
    assert "6 recipients" in body["error"]["message"] and "at most 5" in body["error"]["message"]
    assert _queued(world) == 1


def test_default_recipient_limit_is_100(world: World) -> None:
    world.mailbox(world.owner)
    status, body = _send(world, {"to": [f"p{i}@client.test" for i in range(101)], "text": "x"})
    assert status == 422 and "at most 100" in body["error"]["message"]


def test_message_over_the_account_size_limit_is_413_with_the_limit(world: World) -> None:
    box = world.mailbox(world.owner)

    def small_server(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, box.account_id)
        a.settings = {**a.settings, "smtp_max_size": 200_000}  # SIZE the server advertised

    world.services.db.run(small_server)
    status, body = _send(world, {"to": ["a@client.test"], "text": "words " * 40_000})
    assert status == 413, body
    message = body["error"]["message"]
    assert "0.2 MB message size limit" in message and "your SMTP server" in message
    assert _queued(world) == 0
    assert _send(world, {"to": ["a@client.test"], "text": "words " * 1_000})[0] == 202
    # Under the limit as typed, over it once encoded (base64 grows by a third): still 413.
    file = {"filename": "a.pdf", "data_base64": base64.b64encode(b"%" * 90_000).decode()}
    status, body = _send(
        world, {"to": ["a@client.test"], "text": "ü" * 30_000, "attachments": [file]}
    )
    assert status == 413, body
    assert "as sent" in body["error"]["message"]
    assert _queued(world) == 1


def test_sends_per_hour_is_429_with_retry_after(world: World) -> None:
    world.mailbox(world.owner)
    world.mailbox(world.teammate)
    world.services.settings = dataclasses.replace(world.services.settings, sends_per_hour=2)
    for _ in range(2):
        assert _send(world, {"to": ["a@client.test"], "text": "x"})[0] == 202
    r = world.client.post(
        "/api/messages", json={"to": ["a@client.test"], "text": "x"}, headers=world.owner.headers
    )
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert "2 per hour" in r.json()["error"]["message"]
    assert 3000 < int(r.headers["Retry-After"]) <= 3600
    # a reply is a send too; another user has their own allowance
    first = world.services.db.run(lambda s: s.scalar(select(func.min(OutboxAction.message_id))))
    reply = world.client.post(
        f"/api/messages/{first}/reply", json={"text": "x"}, headers=world.owner.headers
    )
    assert reply.status_code == 429
    assert _send(world, {"to": ["a@client.test"], "text": "x"}, actor="teammate")[0] == 202
    assert _queued(world) == 3
