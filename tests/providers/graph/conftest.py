"""A fake Microsoft Graph on loopback and a real :class:`GraphClient` pointed at it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from crmail.providers.graph import GraphClient
from tests.fakes.graph import FakeGraph, Mailbox
from tests.fakes.server import LoopbackServer
from tests.fakes.tokens import Tokens

_numbers = itertools.count(1)


@dataclass
class Graph:
    fake: FakeGraph
    url: str  # the fake's Graph base URL (…/v1.0)
    box: Mailbox
    tokens: Tokens
    client: GraphClient
    sleeps: list[float]


@pytest.fixture(scope="session")
def graph_server() -> Iterator[tuple[FakeGraph, str]]:
    fake = FakeGraph(seed=11)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url + "/v1.0"


def make_graph(fake: FakeGraph, url: str, *, with_archive: bool = True) -> Graph:
    n = next(_numbers)
    address = f"user{n}@contoso.test"
    tokens = Tokens(fake, address, f"graph-token-{n}")
    box = fake.add_mailbox(address, token=tokens.current, with_archive=with_archive)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = GraphClient(
        tokens.access_token, refresh_access_token=tokens.refresh, base_url=url, sleep=sleep
    )
    return Graph(fake, url, box, tokens, client, sleeps)


@pytest.fixture
async def graph(graph_server: tuple[FakeGraph, str]) -> AsyncIterator[Graph]:
    """A fresh mailbox on the session's fake, and a client whose backoff sleeps are
    recorded instead of waited (tests count requests; they never time them)."""
    fake, url = graph_server
    fake.faults.clear()
    fake.latency = 0.0
    fake.pending.clear()
    made = make_graph(fake, url)
    try:
        yield made
    finally:
        await made.client.aclose()
