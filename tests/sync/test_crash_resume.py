"""Kill the sync process (SIGKILL) in the middle of an import, restart it: exact set, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from crmail.config import Settings
from crmail.services import Services
from crmail.storage.models import Folder, Message, Placement, TimelineEntry
from tests.factories import message, new_world
from tests.servers import Dovecot, MailboxAccount

N = 1500


def _sync_cmd(settings: Settings, account: int) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.update(
        CRMAIL_DATABASE_URL=settings.database_url,
        CRMAIL_SECRET_KEY=",".join(settings.secret_keys),
        CRMAIL_DATA_DIR=str(settings.data_dir),
        CRMAIL_BATCH_SIZE="40",
        CRMAIL_MAIL_ALLOWED_NETWORKS="127.0.0.1",  # the test's Dovecot is on loopback
        # On PostgreSQL the killed run's lease outlives it until it expires: the rerun
        # waits for that (--wait), a short lease keeps the wait short.
        CRMAIL_LEASE_TTL="10",
    )
    return [sys.executable, "-m", "crmail.cli", "sync", "--wait", str(account)], env


def test_kill_mid_import_then_resume(
    services: Services, settings: Settings, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    world = new_world(services)
    me = world.user(mailbox.email)
    world.contact("hal@client.test")
    account = world.connect(me, mailbox)
    raws = [
        message("hal@client.test", mailbox.email, f"n{i}", msgid=f"<n{i}@c.test>")
        if i % 3
        else message("stranger@else.test", mailbox.email, f"s{i}", msgid=f"<s{i}@c.test>")
        for i in range(N)
    ]
    dovecot.seed_maildir(mailbox.email, "INBOX", raws)
    expected = {f"n{i}@c.test" for i in range(N) if i % 3}

    def imported() -> int:
        return services.db.run(
            lambda s: s.scalar(
                select(func.coalesce(func.sum(Folder.import_done), 0)).where(
                    Folder.account_id == account
                )
            )
        )

    cmd, env = _sync_cmd(settings, account)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while imported() < 200:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = imported()
    assert 0 < done_at_kill < N, "the kill must land in the middle of the import"
    partial = services.db.run(lambda s: s.scalar(select(func.count()).select_from(Message)))
    assert 0 < partial < len(expected)

    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()

    stored = services.db.run(lambda s: [r[0] for r in s.execute(select(Message.message_id)).all()])
    assert len(stored) == len(set(stored)), "duplicates after resume"
    assert set(stored) == expected
    placements = services.db.run(lambda s: s.scalar(select(func.count()).select_from(Placement)))
    assert placements == len(expected)
    links = services.db.run(lambda s: s.scalar(select(func.count()).select_from(TimelineEntry)))
    assert links == len(expected)
    folder = services.db.run(
        lambda s: s.scalars(
            select(Folder).where(Folder.account_id == account, Folder.name == "INBOX")
        ).one()
    )
    assert folder.import_complete
    assert folder.skipped == {"no_known_contact": N - len(expected)}


async def test_dropped_connection_mid_import_resumes_without_loss(
    services: Services, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    """The server drops every connection of the user mid-import (doveadm kick): the
    worker goes to "retrying", reconnects with backoff and finishes with the exact set."""
    import asyncio

    from crmail.storage.models import MailAccount
    from crmail.sync.inbound import SyncOptions
    from crmail.sync.worker import AccountWorker, WorkerOptions

    world = new_world(services)
    me = world.user(mailbox.email)
    world.contact("ivan@client.test")
    account = world.connect(me, mailbox)
    dovecot.seed_maildir(
        mailbox.email,
        "INBOX",
        [
            message("ivan@client.test", mailbox.email, f"k{i}", msgid=f"<k{i}@c.test>")
            for i in range(N)
        ],
    )

    def imported() -> int:
        return services.db.run(
            lambda s: s.scalar(
                select(func.coalesce(func.sum(Folder.import_done), 0)).where(
                    Folder.account_id == account
                )
            )
        )

    def state() -> str:
        return services.db.run(lambda s: s.get_one(MailAccount, account).state)

    options = WorkerOptions(sync=SyncOptions(batch_size=40), poll_interval=0.2, max_backoff=2.0)
    task = asyncio.create_task(AccountWorker(services.db, services.box, account, options).run())
    try:
        while imported() < 200:
            await asyncio.sleep(0.005)
        assert imported() < N, "the drop must land in the middle of the import"
        dovecot.doveadm("kick", mailbox.email)
        seen_retrying = False
        for _ in range(3000):
            seen_retrying = seen_retrying or state() == "retrying"
            if state() == "live" and seen_retrying:
                break
            await asyncio.sleep(0.01)
        assert seen_retrying, "the drop was not noticed"
        assert state() == "live"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = services.db.run(lambda s: [r[0] for r in s.execute(select(Message.message_id)).all()])
    assert len(stored) == len(set(stored)) == N
    assert services.db.run(lambda s: s.scalar(select(func.count()).select_from(Placement))) == N
