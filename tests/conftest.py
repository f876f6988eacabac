"""Shared fixtures. Keep this small and generic: server logic lives in tests/servers/."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.servers.small_disk import SmallDisk

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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A size-limited tmpfs to use as crmail's data directory, to fill and free."""
    try:
        disk = SmallDisk.mount(tmp_path / "small-disk")
    except PermissionError as exc:
        pytest.skip(f"cannot mount a size-limited tmpfs to fill (needs root): {exc}")
    try:
        yield disk
    finally:
        disk.unmount()
