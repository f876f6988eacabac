"""`crmail sync ACCOUNT_ID` holds the account's lease: beside a running `crmail run` that
owns the account it refuses in one line naming the holder (with --wait, waits for it to
let go), and once that process has stopped it syncs, then gives the lease back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from crmail.config import Settings
from crmail.services import Services
from crmail.storage import leases
from crmail.storage.models import AccountLease, Message, utcnow
from crmail.sync.leases import AccountBusy, one_lease
from tests.db_fixtures import BACKEND
from tests.factories import message, new_world
from tests.servers import Dovecot, MailboxAccount

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="leases matter on PostgreSQL")


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CRMAIL_DATABASE_URL=settings.database_url,
        CRMAIL_SECRET_KEY=",".join(settings.secret_keys),
        CRMAIL_DATA_DIR=str(settings.data_dir),
        CRMAIL_MAIL_ALLOWED_NETWORKS="127.0.0.1",  # the test's Dovecot is on loopback
        CRMAIL_LEASE_TTL="30",
    )
    return env


def _sync(settings: Settings, account: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmail.cli", "sync", str(account)],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def running(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "run.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crmail.cli", "run", "--role", "sync"],
            env=_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _owner(services: Services, account: int) -> str | None:
    row = services.db.run(lambda s: leases.holder(s, account))
    return None if row is None else row.owner


def test_crmail_sync_refuses_an_account_a_running_process_holds(
    services: Services,
    settings: Settings,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    running: subprocess.Popen[bytes],
) -> None:
    world = new_world(services)
    world.contact("hal@client.test")
    account = world.connect(world.user(mailbox.email), mailbox)
    deadline = time.monotonic() + 60
    while (owner := _owner(services, account)) is None:
        assert running.poll() is None, "crmail run stopped"
        assert time.monotonic() < deadline, "crmail run never claimed the account"
        time.sleep(0.1)
    assert owner.split(":")[-2] == str(running.pid)

    refused = _sync(settings, account)
    assert refused.returncode == 1, refused.stderr
    first = refused.stderr.splitlines()[0]
    assert first.startswith(f"error: account {account} is being synced by {owner}"), first
    assert "its lease runs until" in first
    assert _owner(services, account) == owner, "the refused command must not touch the lease"

    # --wait: told who holds it, and waits until that process lets the account go.
    dovecot.deliver(
        mailbox.email, message("hal@client.test", mailbox.email, "after", msgid="<a@c.test>")
    )
    waiter = subprocess.Popen(
        [sys.executable, "-m", "crmail.cli", "sync", "--wait", str(account)],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None
        told = waiter.stderr.readline()
        assert told.startswith(f"waiting: account {account} is being synced by {owner}"), told
        assert waiter.poll() is None and _owner(services, account) == owner
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=30) == 0
        assert waiter.wait(timeout=120) == 0, waiter.stderr.read()
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    stored = services.db.run(lambda s: s.scalar(select(func.count()).select_from(Message)))
    assert stored == 1, "stored once, whichever process fetched it"
    again = _sync(settings, account)
    assert again.returncode == 0, again.stderr
    assert _owner(services, account) is None, "the lease is given back at the end"
    row = next(r for r in services.db.run(leases.owners) if r.account_id == account)
    assert row.owner is None and row.expires_at <= utcnow()


async def test_the_foreground_lease_fences_writes_once_taken_over(services: Services) -> None:
    async with one_lease(services.db, 7, ttl=30) as db:
        with pytest.raises(AccountBusy):
            async with one_lease(services.db, 7, ttl=30):
                pass
        await db.write(lambda s: None)  # held: writes go through
        # Another process takes it over (as after an expiry): the epoch moves on.
        services.db.run(
            lambda s: s.execute(
                update(AccountLease)
                .where(AccountLease.account_id == 7)
                .values(owner="other:1:x", epoch=AccountLease.epoch + 1)
            )
        )
        with pytest.raises(leases.LeaseLost):
            await db.write(lambda s: None)
