"""Shared fixtures. Keep this small and generic: server logic lives in tests/servers/."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.servers import Dovecot, MailboxAccount, SmtpRelay

pytest_plugins = ["tests.db_fixtures"]

_user_ids = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot per test session; tests isolate themselves by user."""
    with Dovecot() as server:
        yield server


@pytest.fixture
def mailbox(dovecot: Dovecot) -> MailboxAccount:
    """A fresh, empty user ``u<N>@example.test`` on the session's Dovecot."""
    n = next(_user_ids)
    return dovecot.add_user(f"u{n}@example.test", f"pw-{n}-secret")


@pytest.fixture
def smtp_relay(dovecot: Dovecot) -> Iterator[SmtpRelay]:
    """Plain SMTP (no AUTH, no TLS) on loopback relaying into Dovecot's LMTP."""
    with SmtpRelay(dovecot.host, dovecot.lmtp_port) as relay:
        yield relay
