"""Account leases in the database: claim, renewal, expiry, takeover, fencing, fair share,
and one process per SQLite file. The same tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from crmail.config import Settings
from crmail.services import Services
from crmail.storage import leases, outbox
from crmail.storage.leases import LeaseLost
from crmail.storage.models import OutboxAction
from crmail.storage.single import DatabaseInUse, only_process
from crmail.sync.leases import LeaseKeeper
from crmail.sync.service import SyncService
from crmail.sync.worker import WorkerOptions
from tests.factories import new_world
from tests.servers import Dovecot, MailboxAccount


def test_takeover_bumps_the_epoch_and_fences_out_the_old_owner(services: Services) -> None:
    db = services.db
    (a,) = db.run(lambda s: leases.claim(s, "proc-a", [7, 8], 1, ttl=0.3))
    assert (a.account_id, a.owner, a.epoch) == (7, "proc-a", 1)
    # Held and unexpired: nobody else gets it.
    (other,) = db.run(lambda s: leases.claim(s, "proc-b", [7, 8], 5, ttl=0.3))
    assert other.account_id == 8
    db.run(lambda s: leases.fence(s, a))  # still ours: passes

    time.sleep(0.5)  # proc-a paused past its lease
    (b,) = db.run(lambda s: leases.claim(s, "proc-b", [7], 5, ttl=30))
    assert (b.account_id, b.owner, b.epoch) == (7, "proc-b", 2)
    with pytest.raises(LeaseLost):
        db.run(lambda s: leases.fence(s, a))
    assert db.run(lambda s: leases.renew(s, "proc-a", ttl=30)) == []
    db.run(lambda s: leases.fence(s, b))


def test_an_expired_lease_is_not_renewed_even_if_nobody_took_it(services: Services) -> None:
    db = services.db
    (a,) = db.run(lambda s: leases.claim(s, "proc-a", [3], 1, ttl=0.2))
    time.sleep(0.4)
    assert db.run(lambda s: leases.renew(s, "proc-a", ttl=30)) == []
    with pytest.raises(LeaseLost):
        db.run(lambda s: leases.fence(s, a))
    # Claimed again by the same process: a new epoch, the old one stays fenced out.
    (again,) = db.run(lambda s: leases.claim(s, "proc-a", [3], 1, ttl=30))
    assert again.epoch == a.epoch + 1


def test_release_hands_the_account_over_at_once(services: Services) -> None:
    db = services.db
    db.run(lambda s: leases.claim(s, "proc-a", [1, 2], 2, ttl=300))
    assert db.run(lambda s: leases.claim(s, "proc-b", [1, 2], 2, ttl=300)) == []
    assert db.run(lambda s: leases.leave(s, "proc-a")) == 2
    got = db.run(lambda s: leases.claim(s, "proc-b", [1, 2], 2, ttl=300))
    assert sorted(g.account_id for g in got) == [1, 2]


def test_the_next_expiry_is_another_live_lease_on_the_databases_clock(
    services: Services,
) -> None:
    db = services.db
    db.run(lambda s: leases.claim(s, "proc-a", [1], 1, ttl=0.2))
    db.run(lambda s: leases.claim(s, "proc-b", [2], 1, ttl=30))
    db.run(lambda s: leases.claim(s, "proc-c", [3], 1, ttl=60))
    time.sleep(0.4)
    # proc-a's lease ran out (claimable now, nothing to wait for); proc-b's runs out next.
    left = db.run(lambda s: leases.next_expiry(s, "proc-c", [1, 2, 3]))
    assert left is not None and 20 < left <= 30
    assert db.run(lambda s: leases.next_expiry(s, "proc-b", [1, 2])) is None  # its own
    assert db.run(lambda s: leases.next_expiry(s, "proc-c", [4])) is None  # nobody's


async def test_a_dead_processs_accounts_are_claimed_when_its_leases_run_out(
    services: Services, dovecot: Dovecot
) -> None:
    """The survivor is at its fair share and would look again only at its next scan or
    heartbeat (both minutes away): it claims the dead process's accounts because it
    woke when their leases ran out, read from the database when it claimed its share."""
    world = new_world(services)
    accounts = []
    for i in range(4):
        box = dovecot.add_user(f"exp{i}{os.urandom(3).hex()}@example.test", "pw-expiry")
        accounts.append(world.connect(world.user(box.email), box))
    dead_ttl = 5.0  # the dead process's last renewal, a few seconds before the survivor starts
    services.db.run(lambda s: leases.heartbeat(s, "proc-dead", dead_ttl))
    dead = services.db.run(lambda s: leases.claim(s, "proc-dead", accounts[:2], 2, dead_ttl))
    assert len(dead) == 2

    keeper = LeaseKeeper(services.db, ttl=600, owner="proc-survivor")  # renews every 200 s
    service = SyncService(
        services.db, services.box, WorkerOptions(), scan_interval=600, keeper=keeper
    )
    service.start()
    try:
        await _until(lambda: len(keeper.held) >= 2)
        # Its share of two live processes, claimed while the dead one's leases still ran.
        assert sorted(keeper.held) == accounts[2:]
        assert keeper.expiry_at is not None
        await _until(lambda: len(keeper.held) == 4, timeout=30)
        assert [keeper.held[a].epoch for a in accounts[:2]] == [2, 2]  # taken over
    finally:
        await service.stop()


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_fenced_worker_cannot_claim_or_finish_an_outbox_action(
    services: Services, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    """The old owner's writes — claiming the next action, recording an outcome — are
    refused once another process took the account, and leave nothing behind."""
    world = new_world(services)
    me = world.user(mailbox.email)
    account = world.connect(me, mailbox)
    action_id = services.db.run(
        lambda s: outbox.enqueue(
            s,
            workspace_id=world.workspace_id,
            account_id=account,
            user_id=me,
            message_id=None,
            kind="sync",
            payload={},
        )
    )
    old = LeaseKeeper(services.db, ttl=0.6, owner="proc-old")
    await old.claim([account])
    fenced = old.fenced(old.held[account])
    await asyncio.sleep(0.8)  # paused past the lease (and past the local deadline)
    with pytest.raises(LeaseLost):
        await fenced.write(lambda s: outbox.claim_next(s, account))

    # Even with the local deadline ignored, the database refuses the stale epoch.
    new = LeaseKeeper(services.db, ttl=30, owner="proc-new")
    await new.claim([account])
    stale = leases.FencedDatabase(services.db, old.held[account], lambda: True)
    with pytest.raises(LeaseLost):
        await stale.write(lambda s: outbox.claim_next(s, account))
    state = services.db.run(lambda s: s.get_one(OutboxAction, action_id).state)
    assert state == outbox.PENDING, "a refused write must leave nothing behind"
    claimed = await new.fenced(new.held[account]).write(lambda s: outbox.claim_next(s, account))
    assert claimed is not None and claimed.id == action_id


async def test_each_process_claims_its_fair_share_or_the_cap(services: Services) -> None:
    accounts = list(range(1, 7))
    a = LeaseKeeper(services.db, ttl=30, owner="proc-a")
    b = LeaseKeeper(services.db, ttl=30, owner="proc-b")
    await a.beat()
    await b.beat()  # two live processes now
    await a.beat()
    assert a.live == 2
    assert len(await a.claim(accounts)) == 3
    assert len(await b.claim(accounts)) == 3
    assert set(a.held).isdisjoint(b.held)

    # A third process joins: the first two find themselves over their share.
    c = LeaseKeeper(services.db, ttl=30, owner="proc-c")
    await c.beat()
    _, surplus = await a.beat()
    assert len(surplus) == 1
    await a.release(surplus)
    assert len(await c.claim(accounts)) == 1

    capped = LeaseKeeper(services.db, ttl=30, owner="proc-d", max_accounts=1)
    await capped.leave()
    await a.leave()
    assert len(await capped.claim(accounts)) == 1


def test_a_second_process_on_one_sqlite_file_is_refused(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    path = settings.sqlite_path
    with only_process(settings.database_url):
        with pytest.raises(DatabaseInUse) as refused, only_process(settings.database_url):
            pass
        assert str(path) in refused.value.message and "use PostgreSQL" in refused.value.message

        env = {
            "CRMAIL_DATABASE_URL": settings.database_url,
            "CRMAIL_SECRET_KEY": ",".join(settings.secret_keys),
            "CRMAIL_DATA_DIR": str(settings.data_dir),
            "PATH": "/usr/bin:/bin",
        }
        for args in (["run", "--role", "sync"], ["sync", "1"]):
            proc = subprocess.run(
                [sys.executable, "-m", "crmail.cli", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 1, proc.stderr
            assert f"another crmail process is using {path}" in proc.stderr
            assert "SQLite serves one process" in proc.stderr
    # Released with its holder: the next process may open it.
    with only_process(settings.database_url):
        pass


async def test_renewals_do_not_wait_behind_the_workers_reads_or_writes(
    services: Services,
) -> None:
    # A thousand accounts starting fill the shared thread pool with reads and the
    # writer with commits; a renewal queued behind them let every lease run out.
    import concurrent.futures
    import threading

    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
    keeper = LeaseKeeper(services.db, ttl=3)  # renewed every 1 s
    await keeper.claim([5])
    busy = threading.Event()
    blocked = [asyncio.to_thread(busy.wait) for _ in range(2)]
    blocked.append(services.db.write(lambda s: busy.wait()))
    waiting = asyncio.gather(*blocked)
    outcomes: list[object] = []
    halt = keeper.renew_on_schedule(outcomes.append)
    try:
        for _ in range(300):  # the pool and the writer stay blocked meanwhile
            if outcomes:
                break
            await asyncio.sleep(0.1)
        assert outcomes, "no renewal while the pool and the writer were busy"
        assert keeper.settle(outcomes[0]) == ([], []) and keeper.valid(5)  # type: ignore[arg-type]
    finally:
        halt()
        busy.set()
        await waiting


async def test_a_lease_given_up_late_but_still_ours_is_taken_back(services: Services) -> None:
    # The process's clock gave the lease up (a renewal came late); the database still
    # has it as ours: nobody else may claim it, so this process must sync it again.
    keeper = LeaseKeeper(services.db, ttl=30)
    await keeper.claim([5])
    keeper._renewed[5] -= 60  # the last renewal, long ago on this clock
    assert keeper.expired_locally() == [5]
    assert 5 not in keeper.held
    lost, _ = await keeper.beat()
    assert lost == []
    assert keeper.valid(5) and keeper.held[5].account_id == 5


async def test_renewals_keep_their_schedule_while_the_event_loop_is_blocked(
    services: Services,
) -> None:
    # A thousand accounts starting kept the loop busy for seconds: renewals timed and
    # recorded by the loop came late, and the leases were given up on this clock.
    keeper = LeaseKeeper(services.db, ttl=3)  # renewed every 1 s, given up after 2.5 s
    await keeper.claim([5])
    outcomes: list[object] = []
    halt = keeper.renew_on_schedule(outcomes.append)
    try:
        time.sleep(4)  # the loop blocked past the lease's local deadline
        assert keeper.valid(5), "renewed meanwhile by the renewal thread"
        assert keeper.expired_locally() == []
    finally:
        halt()
    assert len(outcomes) >= 2 and keeper.settle(outcomes[-1]) == ([], [])  # type: ignore[arg-type]
    assert db_owner(services, 5) == keeper.owner


def db_owner(services: Services, account_id: int) -> str | None:
    row = services.db.run(lambda s: leases.holder(s, account_id))
    return None if row is None else row.owner
