"""This process's share of the accounts: claimed, renewed on a heartbeat, given back.

The lease table (:mod:`crmail.storage.leases`) says which process syncs which account.
The keeper claims up to a fair share (accounts over live processes, or the operator's
cap), renews every third of the TTL, and gives up an account *before* its lease can
expire anywhere: once ``ttl - margin`` has passed since the last renewal that committed,
the account counts as lost on this process's own (monotonic) clock, whether or not the
database could be reached to say so. Its worker is stopped, and every write still in
flight is refused by the fence. A renewal may thus commit up to ``ttl/2`` after it was
due (:attr:`LeaseKeeper.lateness_allowed`); how late they come is logged.

Each claim also reads when the first lease another process holds among the wanted
accounts runs out (on the database's clock, which stamped it): the service claims again
at that moment, so a dead process's accounts are taken over when its leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from crmail.errors import CrmailError
from crmail.storage import leases
from crmail.storage.db import Database
from crmail.storage.leases import FencedDatabase, Lease
from crmail.storage.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Renewal:
    """One heartbeat's outcome: live processes, the leases still ours, when it began."""

    live: int
    renewed: list[Lease]
    started: float


class LeaseKeeper:
    def __init__(
        self,
        db: Database,
        *,
        ttl: float = 15.0,
        max_accounts: int = 0,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.ttl = ttl
        #: a lease is given up this long before it could expire in the database
        self.margin = ttl / 6
        self.max_accounts = max_accounts
        self.owner = owner or leases.new_owner()
        self.held: dict[int, Lease] = {}
        #: monotonic time each lease was last claimed or renewed (taken *before* the
        #: statement ran: the database's expiry is at least ttl after it)
        self._renewed: dict[int, float] = {}
        #: live sync processes, from the last heartbeat
        self.live = 1
        #: monotonic time the first lease another process holds among the wanted accounts
        #: runs out (seen at the last claim): a claim is tried then, not at the next scan
        self.expiry_at: float | None = None
        #: how late the latest renewals committed, worst first seen (s after due)
        self.worst_lateness = 0.0
        self._total = 0
        self._registered = False

    @property
    def heartbeat_interval(self) -> float:
        return self.ttl / 3

    def valid(self, account_id: int) -> bool:
        """Is the lease still ours by our own clock (with the safety margin)?"""
        renewed = self._renewed.get(account_id)
        return renewed is not None and time.monotonic() < renewed + self.ttl - self.margin

    def fenced(self, lease: Lease) -> Database:
        """The database for the worker of ``lease``: every write checks the lease."""
        return FencedDatabase(self.db, lease, lambda: self.valid(lease.account_id))

    def fair_share(self) -> int:
        share = math.ceil(self._total / max(1, self.live))
        return min(share, self.max_accounts) if self.max_accounts > 0 else share

    async def claim(self, wanted: list[int]) -> list[Lease]:
        """Claim free or expired leases among ``wanted`` up to the fair share."""
        self._total = len(wanted)
        mine = set(self.held)
        others = [a for a in wanted if a not in mine]
        if not others:
            self.expiry_at = None
            return []

        def claim(s: Session) -> list[Lease]:
            # Counted afresh: a process that just left frees its share at once. The
            # first claim registers this process, so the others make room for it.
            if self._registered:
                self.live = leases.live_processes(s)
            else:
                self.live = leases.heartbeat(s, self.owner, self.ttl)
                self._registered = True
            room = self.fair_share() - len(mine)
            got = leases.claim(s, self.owner, others, room, self.ttl)
            # Even at its share: a dead process's leases and its heartbeat run out
            # together, and the share grows then. Read on the database's clock, which
            # stamped them; the local deadline errs late by this transaction's age.
            left = leases.next_expiry(s, self.owner, others)
            self.expiry_at = None if left is None else time.monotonic() + left
            return got

        started = time.monotonic()
        got = await self.db.write(claim)
        for lease in got:
            self.held[lease.account_id] = lease
            self._renewed[lease.account_id] = started
        if got:
            log.info("claimed the leases of accounts %s", [g.account_id for g in got])
        return got

    async def beat(self) -> tuple[list[int], list[int]]:
        """One heartbeat and renewal now (the service renews on :meth:`renew_on_schedule`).
        Returns (lost, surplus): leases no longer held, and leases over the fair share,
        which the caller stops and then :meth:`release`s."""
        return self.settle(await asyncio.to_thread(self.renew))

    def renew(self) -> Renewal:
        """The heartbeat and renewal transaction (blocking: the beat thread's). The leases
        renewed count from when it began, recorded here at once: an event loop running
        behind (a thousand accounts starting) must not make them look late."""
        started = time.monotonic()
        oldest = min(self._renewed.copy().values(), default=None)

        def beat(s: Session) -> tuple[int, list[Lease]]:
            live = leases.heartbeat(s, self.owner, self.ttl)
            return live, leases.renew(s, self.owner, self.ttl)

        live, renewed = self.db.run(beat)
        for lease in renewed:
            if lease.account_id in self._renewed:  # one the loop let go stays gone
                self._renewed[lease.account_id] = started
        if oldest is not None:
            self._note_lateness(time.monotonic() - (oldest + self.heartbeat_interval))
        return Renewal(live, renewed, started)

    def settle(self, renewal: Renewal) -> tuple[list[int], list[int]]:
        """On the event loop, after :meth:`renew`: (lost, surplus), as :meth:`beat`."""
        self.live = renewal.live
        still = {r.account_id for r in renewal.renewed}
        for lease in renewal.renewed:
            # Also a lease given up on this clock (a renewal came late) that the database
            # still had as ours: taken back, else the renewals by owner would keep it
            # from everyone, this process included, for good.
            self.held.setdefault(lease.account_id, lease)
            self._renewed[lease.account_id] = max(
                renewal.started, self._renewed.get(lease.account_id, renewal.started)
            )
        lost = [a for a in self.held if a not in still]
        for account_id in lost:
            self._forget(account_id)
        excess = len(self.held) - self.fair_share()
        surplus = sorted(self.held)[-excess:] if excess > 0 else []
        return lost, surplus

    def renew_on_schedule(
        self, deliver: Callable[[Renewal | CrmailError], None]
    ) -> Callable[[], None]:
        """Renew every :attr:`heartbeat_interval` on a thread of its own, timed by that
        thread, and hand each outcome to ``deliver`` (from that thread). Behind the single
        writer a long import commit held renewals up, and in the shared pool a thousand
        accounts' start-up reads did: their leases ran out on this process's clock. Returns the stop,
        which waits for a renewal in flight: a process leaving must not record its
        heartbeat again after it left."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    outcome: Renewal | CrmailError = self.renew()
                except CrmailError as exc:
                    outcome = exc
                except Exception:  # a bug: the thread must go on renewing
                    log.exception("the lease renewal failed")
                    continue
                if not stop.is_set():
                    deliver(outcome)

        thread = threading.Thread(target=run, name="lease-renewals", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt

    @property
    def lateness_allowed(self) -> float:
        """How long after it is due a renewal may commit before leases are given up."""
        return self.ttl - self.margin - self.heartbeat_interval

    def _note_lateness(self, late: float) -> None:
        if late > self.worst_lateness:
            self.worst_lateness = late
            log.info("lease renewal committed %.2fs after due, the latest yet", late)
        if late > self.margin:
            log.warning(
                "lease renewal committed %.1fs after due (leases are given up at %.1fs): "
                "the database or this process is slow; a longer CRMAIL_LEASE_TTL helps",
                late,
                self.lateness_allowed,
            )

    def expired_locally(self) -> list[int]:
        """Leases past their local deadline (the database could not be reached to renew
        them): forgotten here, and their workers must stop."""
        gone = [a for a in self.held if not self.valid(a)]
        for account_id in gone:
            self._forget(account_id)
        return gone

    async def release(self, account_ids: list[int]) -> None:
        for account_id in account_ids:
            self._forget(account_id)
        await self.db.write(lambda s: leases.release(s, self.owner, account_ids))
        log.info("released the leases of accounts %s", account_ids)

    async def leave(self) -> None:
        """Shutdown: every lease is free for the other processes at once."""
        self.held.clear()
        self._renewed.clear()
        n = await asyncio.to_thread(self.db.run, lambda s: leases.leave(s, self.owner))
        log.info("released %d account leases", n)

    def _forget(self, account_id: int) -> None:
        self.held.pop(account_id, None)
        self._renewed.pop(account_id, None)


class AccountBusy(CrmailError):
    """Another process holds the account's lease: it is syncing it now."""

    code = "account_busy"
    http_status = 409


@contextlib.asynccontextmanager
async def one_lease(
    db: Database,
    account_id: int,
    *,
    ttl: float,
    waiting: Callable[[str], None] | None = None,
) -> AsyncIterator[Database]:
    """Hold one account's lease for a foreground job (``crmail sync``): yields the fenced
    database its worker must write through, renews the lease meanwhile, releases it at
    the end. It does not join the live processes: the sync processes do not make room
    for it, they just skip the account until it is given back.

    When another process holds the lease: raises :class:`AccountBusy`, naming the holder
    and when its lease runs out; or, given ``waiting``, tells it that once and waits
    until the lease is free.
    """
    owner = leases.new_owner()
    while True:
        started = time.monotonic()
        got = await db.write(lambda s: leases.claim(s, owner, [account_id], 1, ttl))
        if got:
            break
        holder = await db.read(lambda s: leases.holder(s, account_id))
        if waiting is None:
            raise AccountBusy(_busy(account_id, holder), hint=_BUSY_HINT)
        waiting(_busy(account_id, holder))
        waiting = _quiet
        await asyncio.sleep(WAIT_POLL)
    renewed = started
    margin = ttl / 6

    def valid() -> bool:
        return time.monotonic() < renewed + ttl - margin

    async def keep() -> None:
        nonlocal renewed
        while True:
            await asyncio.sleep(ttl / 3)
            beat = time.monotonic()
            try:
                held = await asyncio.to_thread(db.run, lambda s: leases.renew(s, owner, ttl))
            except CrmailError as exc:
                log.warning("could not renew the lease of account %s: %s", account_id, exc)
                continue  # valid() runs out before the lease can expire elsewhere
            if not held:
                log.warning("lost the lease of account %s", account_id)
                return
            renewed = beat

    keeper = asyncio.create_task(keep(), name=f"lease-{account_id}")
    try:
        yield FencedDatabase(db, got[0], valid)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            await asyncio.to_thread(db.run, lambda s: leases.release(s, owner))
        except CrmailError as exc:
            log.warning(
                "could not release the lease of account %s (it expires): %s", account_id, exc
            )


#: how often a waiting ``crmail sync --wait`` looks again (a stopped holder frees the
#: lease at once; a crashed one when it expires)
WAIT_POLL = 1.0


def _quiet(message: str) -> None:
    pass


_BUSY_HINT = (
    "that process is syncing it: leave it to it, or stop it first (a stopped process "
    "gives its leases back at once)"
)


def _busy(account_id: int, holder: leases.LeaseRow | None) -> str:
    if holder is None or holder.owner is None:
        return f"account {account_id} is being claimed by another crmail process right now"
    left = max(0.0, (holder.expires_at - utcnow()).total_seconds())
    return (
        f"account {account_id} is being synced by {holder.owner}; its lease runs until "
        f"{holder.expires_at:%Y-%m-%d %H:%M:%S} UTC ({left:.0f} s from now) and is renewed "
        "while that process runs"
    )
