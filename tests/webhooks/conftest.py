"""Webhook fixtures: a loopback receiver, a controllable clock, and the API world."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import api_services, world  # noqa: F401  (fixtures reused here)
from tests.webhooks.receiver import Receiver


class Clock:
    """The sender's notion of now: real time, jumped ahead by tests instead of waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def clock() -> Clock:
    return Clock()
