"""Disconnecting or removing a Graph or Gmail account stops its push at the provider
(Graph: DELETE /subscriptions/{id}; Gmail: users.stop), best effort, against the fakes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from crmail.storage import accounts, graph_push
from crmail.storage.models import GraphSubscription, MailAccount
from tests.api.conftest import World
from tests.fakes.gmail import FakeGmail
from tests.fakes.graph import FakeGraph, Sub
from tests.fakes.server import LoopbackServer

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def graph() -> Iterator[tuple[FakeGraph, str]]:
    fake = FakeGraph(seed=21)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url + "/v1.0"


@pytest.fixture(scope="module")
def gmail() -> Iterator[tuple[FakeGmail, str]]:
    fake = FakeGmail(seed=21)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url


def _account(world: World, provider: str, token: str) -> int:
    owner = world.owner
    return world.services.db.run(
        lambda s: accounts.create_account(
            s,
            workspace_id=owner.workspace_id,
            user_id=owner.id,
            email=f"{uuid.uuid4().hex[:8]}@contoso.test",
            provider=provider,
            settings={"history_days": 30},
            secret=world.services.box.seal({"oauth2_token": token}),
        )
    )


def _graph_account(world: World, fake: FakeGraph, url: str) -> tuple[int, str]:
    """A Graph account whose worker subscribed (a live subscription in the fake, its row
    in crmail)."""
    world.services.settings = replace(world.services.settings, graph_api_url=url)
    token = f"teardown-{uuid.uuid4().hex}"
    account_id = _account(world, "graph", token)
    box = fake.add_mailbox(
        world.services.db.run(lambda s: s.get_one(MailAccount, account_id).email), token
    )
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    sub = Sub(
        str(uuid.uuid4()), box, "me/messages", {"created"}, "https://crm/x", None, "c", expires
    )
    fake.subscriptions[sub.id] = sub
    world.services.db.run(
        lambda s: graph_push.save(
            s,
            account_id,
            subscription_id=sub.id,
            resource="me/messages",
            notification_url="https://crm/x",
            client_state=b"sealed",
            expires_at=expires,
        )
    )
    return account_id, sub.id


def _settings(world: World, account_id: int) -> dict[str, object]:
    return dict(world.services.db.run(lambda s: s.get_one(MailAccount, account_id).settings))


def test_disconnect_deletes_the_graph_subscription_and_records_it(
    world: World, graph: tuple[FakeGraph, str]
) -> None:
    fake, url = graph
    account_id, sub_id = _graph_account(world, fake, url)
    r = world.client.post(f"/api/accounts/{account_id}/disconnect", headers=world.owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "disconnected"
    assert sub_id not in fake.subscriptions
    assert fake.count("DELETE", f"/subscriptions/{sub_id}", status=204) == 1
    assert _settings(world, account_id)["push_stopped"]["outcome"] == "stopped"  # type: ignore[index]
    # A reconnect subscribes afresh: the stale row is gone.
    assert world.services.db.run(lambda s: s.get(GraphSubscription, account_id)) is None


def test_delete_tolerates_a_subscription_graph_already_dropped(
    world: World, graph: tuple[FakeGraph, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = graph
    account_id, sub_id = _graph_account(world, fake, url)
    del fake.subscriptions[sub_id]  # expired or removed by Graph meanwhile
    caplog.set_level("INFO", "crmail.sync.push_teardown")
    r = world.client.delete(f"/api/accounts/{account_id}", headers=world.owner.headers)
    assert r.status_code == 204, r.text
    assert fake.count("DELETE", f"/subscriptions/{sub_id}", status=404) == 1
    assert f"account {account_id}: push stopped at the provider: already gone" in caplog.text
    assert world.services.db.run(lambda s: s.get(MailAccount, account_id)) is None


def test_a_graph_failure_never_blocks_the_disconnect(
    world: World, graph: tuple[FakeGraph, str]
) -> None:
    fake, url = graph
    account_id, sub_id = _graph_account(world, fake, url)
    fake.fail(400, path_contains=f"/subscriptions/{sub_id}", code="InvalidRequest")
    r = world.client.post(f"/api/accounts/{account_id}/disconnect", headers=world.owner.headers)
    assert r.status_code == 200, r.text
    outcome = _settings(world, account_id)["push_stopped"]["outcome"]  # type: ignore[index]
    assert str(outcome).startswith("failed: ")


def test_delete_stops_the_gmail_watch(world: World, gmail: tuple[FakeGmail, str]) -> None:
    fake, url = gmail
    world.services.settings = replace(
        world.services.settings, gmail_api_url=url, gmail_push_topic="projects/p/topics/t"
    )
    token = f"gmail-teardown-{uuid.uuid4().hex}"
    account_id = _account(world, "gmail", token)
    address = world.services.db.run(lambda s: s.get_one(MailAccount, account_id).email)
    box = fake.add_mailbox(address, token=token)
    box.watch = {"topicName": "projects/p/topics/t", "expiration": "0"}
    r = world.client.delete(f"/api/accounts/{account_id}", headers=world.owner.headers)
    assert r.status_code == 204, r.text
    assert box.watch is None
    rows = world.services.db.run(lambda s: s.scalars(select(MailAccount.id)).all())
    assert account_id not in rows
