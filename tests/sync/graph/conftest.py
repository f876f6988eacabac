"""A Microsoft account synced through Graph against the fake Graph on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from crmail.services import Services
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.worker import WorkerOptions
from tests.factories import World, message, new_world
from tests.fakes.graph import FakeGraph, Mailbox
from tests.fakes.server import LoopbackServer
from tests.sync.api_fixtures import QUICK_RETRY, SyncedAccount, connect_api_account
from tests.sync.test_inbound import FAST

pytestmark = pytest.mark.db

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def graph_fake() -> Iterator[tuple[FakeGraph, str]]:
    fake = FakeGraph(seed=13)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url + "/v1.0"


@dataclass
class Outlook(SyncedAccount[GraphWorker]):
    worker_class = GraphWorker

    services: Services
    world: World
    fake: FakeGraph
    box: Mailbox
    user_id: int
    account_id: int
    options: WorkerOptions

    def deliver(
        self, sender: str, subject: str = "Hello", *, minutes_ago: int = 5, **kw: object
    ) -> str:
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
        folder = str(kw.pop("folder", "inbox"))
        raw = message(sender, self.address, subject, date=when, **kw)  # type: ignore[arg-type]
        return self.box.deliver(raw, folder=folder, received=when).id

    def mime_fetches(self, graph_id: str) -> int:
        return sum(1 for r in self.fake.requests if r.path.endswith(f"/messages/{graph_id}/$value"))


@pytest.fixture
def outlook(services: Services, graph_fake: tuple[FakeGraph, str]) -> Outlook:
    fake, url = graph_fake
    fake.faults.clear()
    fake.pending.clear()
    n = next(_numbers)
    address = f"sam{n}@contoso.test"
    token = f"graph-sync-token-{n}"
    box = fake.add_mailbox(address, token=token)
    world = new_world(services)
    me = world.user(address)
    account_id = connect_api_account(services, world, me, address, token, "graph")
    options = replace(
        FAST,
        graph=GraphOptions(base_url=url, retry=QUICK_RETRY, page_size=10),
        min_backoff=0.05,
        max_backoff=0.2,
    )
    return Outlook(services, world, fake, box, me, account_id, options)
