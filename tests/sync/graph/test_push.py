"""Microsoft Graph push: the GraphWorker subscribes (Graph's validation handshake reaches
POST /api/push/graph), a change notification wakes a delta round before the poll,
clientState is checked, lifecycle events renew or recreate, renewal before expiry."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace

import httpx
import pytest

from crmail.api.app import create_app
from crmail.services import Services
from crmail.storage import graph_push
from crmail.storage.models import MailAccount
from crmail.sync.graph.worker import GraphWorker
from tests.fakes.graph import Sub
from tests.fakes.server import LoopbackServer
from tests.sync.graph.conftest import Outlook
from tests.sync.test_inbound import wait_for

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


class Wakes:
    """Stands in for the sync service: wake-ups reach the worker on its own loop."""

    def __init__(self) -> None:
        self.worker: GraphWorker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.woken: list[list[int]] = []

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        ids = list(account_ids)
        self.woken.append(ids)
        worker, loop = self.worker, self.loop
        if worker is not None and loop is not None and worker.account_id in ids:
            loop.call_soon_threadsafe(worker.wake)


@pytest.fixture
def wakes(outlook: Outlook) -> Wakes:
    wakes = Wakes()
    outlook.services.sync = wakes  # type: ignore[assignment]
    return wakes


@pytest.fixture
def api(outlook: Outlook, wakes: Wakes) -> Iterator[str]:
    with LoopbackServer(create_app(outlook.services)) as server:
        yield server.url


def push_worker(outlook: Outlook, api: str) -> GraphWorker:
    # The safety poll would take an hour: only a notification can bring mail in time.
    return outlook.worker(
        poll_interval=3600.0,
        graph=replace(outlook.options.graph, notification_url=f"{api}/api/push/graph"),
    )


def subscription_of(outlook: Outlook) -> Sub | None:
    subs = [s for s in outlook.fake.subscriptions.values() if s.box is outlook.box]
    return subs[0] if subs else None


def stored(outlook: Outlook) -> graph_push.StoredSubscription | None:
    services: Services = outlook.services
    return services.db.run(lambda s: graph_push.of_account(s, outlook.account_id))


def patches(outlook: Outlook) -> int:
    return outlook.fake.count("PATCH", "/subscriptions/", status=200)


@pytest.fixture
async def running(outlook: Outlook, api: str, wakes: Wakes) -> AsyncIterator[GraphWorker]:
    worker = push_worker(outlook, api)
    wakes.worker, wakes.loop = worker, asyncio.get_running_loop()
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(
            lambda: (
                outlook.services.db.run(lambda s: s.get_one(MailAccount, outlook.account_id).state)
                == "live"
                and stored(outlook) is not None
            )
        )
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_notification_stores_new_mail_without_waiting_for_the_poll(
    outlook: Outlook, running: GraphWorker, wakes: Wakes
) -> None:
    outlook.world.contact(CUSTOMER)
    sub = subscription_of(outlook)
    row = stored(outlook)
    assert sub is not None and row is not None
    assert sub.id == row.subscription_id and sub.resource == "me/messages"
    assert sub.client_state and sub.client_state.encode() not in row.client_state
    await wait_for(lambda: not running._mailbox_wake.is_set())
    rounds = running.rounds
    gid = outlook.deliver(CUSTOMER, "Pushed to us")
    assert await asyncio.to_thread(outlook.fake.flush) == [202]
    await wait_for(lambda: outlook.message_id_of(gid) is not None and running.rounds > rounds)
    assert [outlook.account_id] in wakes.woken


async def test_a_wrong_client_state_is_ignored(
    outlook: Outlook, running: GraphWorker, wakes: Wakes, api: str
) -> None:
    sub = subscription_of(outlook)
    assert sub is not None
    before = list(wakes.woken)
    status = await asyncio.to_thread(
        outlook.fake.lifecycle, sub.id, "reauthorizationRequired", client_state="guessed"
    )
    assert status == 202
    forged = {
        "value": [
            {"subscriptionId": sub.id, "clientState": "guessed", "changeType": "created"},
            {"subscriptionId": "no-such-subscription", "clientState": "x"},
        ]
    }
    async with httpx.AsyncClient(base_url=api) as c:
        answer = await c.post("/api/push/graph", json=forged)
        assert answer.status_code == 202
        too_big = await c.post("/api/push/graph", content=b"x" * 300_000)
        assert too_big.status_code == 413
        assert (await c.post("/api/push/graph", content=b"{}")).status_code == 422
    assert wakes.woken == before
    row = stored(outlook)
    assert row is not None and not row.renew_requested


async def test_the_validation_handshake_is_answered(api: str) -> None:
    token = "Validation: Testing client application reachability 1234"
    async with httpx.AsyncClient(base_url=api) as c:
        answer = await c.post("/api/push/graph", params={"validationToken": token})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == token


async def test_reauthorization_required_renews(outlook: Outlook, running: GraphWorker) -> None:
    sub = subscription_of(outlook)
    assert sub is not None
    renewed = patches(outlook)
    assert await asyncio.to_thread(outlook.fake.lifecycle, sub.id, "reauthorizationRequired") == 202
    await wait_for(lambda: patches(outlook) > renewed)
    await wait_for(lambda: (row := stored(outlook)) is not None and not row.renew_requested)


async def test_a_removed_subscription_is_created_again(
    outlook: Outlook, running: GraphWorker
) -> None:
    sub = subscription_of(outlook)
    assert sub is not None
    assert await asyncio.to_thread(outlook.fake.lifecycle, sub.id, "subscriptionRemoved") == 202
    await wait_for(lambda: (new := subscription_of(outlook)) is not None and new.id != sub.id)
    await wait_for(lambda: (row := stored(outlook)) is not None and row.subscription_id != sub.id)


async def test_a_subscription_near_expiry_is_renewed(
    outlook: Outlook, api: str, wakes: Wakes
) -> None:
    worker = push_worker(outlook, api)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: stored(outlook) is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    sub = subscription_of(outlook)
    assert sub is not None
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    sub.expiration = soon
    outlook.services.db.run(lambda s: graph_push.renewed(s, sub.id, soon))
    renewed = patches(outlook)
    task = asyncio.create_task(push_worker(outlook, api).run())
    try:
        await wait_for(lambda: patches(outlook) > renewed)
        await wait_for(
            lambda: (
                (row := stored(outlook)) is not None
                and row.expires_at > soon + dt.timedelta(days=5)
            )
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert subscription_of(outlook) is sub  # the same subscription, not a new one
