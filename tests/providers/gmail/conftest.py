"""A fake Gmail on loopback and a real :class:`GmailClient` pointed at it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from crmail.providers.gmail import GmailClient
from tests.fakes.gmail import FakeGmail, Mailbox
from tests.fakes.server import LoopbackServer
from tests.fakes.tokens import Tokens

_numbers = itertools.count(1)


@dataclass
class Gmail:
    fake: FakeGmail
    box: Mailbox
    tokens: Tokens
    client: GmailClient
    sleeps: list[float]


@pytest.fixture(scope="session")
def gmail_server() -> Iterator[tuple[FakeGmail, str]]:
    fake = FakeGmail(seed=7)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
async def gmail(gmail_server: tuple[FakeGmail, str]) -> AsyncIterator[Gmail]:
    """A fresh mailbox on the session's fake, and a client whose backoff sleeps are
    recorded instead of waited (tests count requests; they never time them)."""
    fake, url = gmail_server
    n = next(_numbers)
    address = f"user{n}@gmail.test"
    tokens = Tokens(fake, address, f"token-{n}")
    box = fake.add_mailbox(address, token=tokens.current)
    fake.faults.clear()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = GmailClient(
        tokens.access_token, refresh_access_token=tokens.refresh, base_url=url, sleep=sleep
    )
    try:
        yield Gmail(fake, box, tokens, client, sleeps)
    finally:
        await client.aclose()
