"""Account leases: each account is synced by one process at a time, across a cluster.

A process claims the accounts nobody holds (or whose holder stopped renewing), renews
its leases on a heartbeat, and releases them when it shuts down. Every takeover bumps
the lease's ``epoch``; every write a worker makes first checks, in the same
transaction, that its lease (owner and epoch) is still current and unexpired
(:func:`fence`), so an owner that was paused or cut off past its lease cannot apply an
action or send once another process has taken over.

On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED``, so processes claiming together
never block on or take the same row; a fence check holds the lease row (``FOR SHARE``)
until its transaction commits, so a takeover waits for a write in flight instead of
overlapping it. Times are the database's own clock on PostgreSQL: hosts' clocks may
differ, the database's is the one all of them read. SQLite serves one process (see
:mod:`crmail.storage.single`), and runs the same statements without the locking clauses.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crmail.errors import CrmailError
from crmail.storage.db import Database
from crmail.storage.models import AccountLease, SyncProcess, utcnow

T = TypeVar("T")

#: the lease of the default sending provider's queue (no account has id 0)
DEFAULT_SENDER = 0


class LeaseLost(CrmailError):
    """This process no longer holds the account's lease: another one may be syncing it."""


@dataclass(frozen=True, slots=True)
class Lease:
    account_id: int
    owner: str
    epoch: int


def new_owner() -> str:
    """This process's name in the lease table: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


def _now(s: Session) -> Any:
    """The database's clock on PostgreSQL (one clock for every host); ours on SQLite."""
    return func.now() if _is_postgres(s) else utcnow()


def _is_postgres(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def _ttl(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# --- processes ---------------------------------------------------------------------------


def heartbeat(s: Session, owner: str, ttl: float) -> int:
    """Record this process as live for ``ttl`` seconds; returns how many are live."""
    now = _now(s)
    values = {"owner": owner, "started_at": utcnow(), "expires_at": now + _ttl(ttl)}
    if _is_postgres(s):
        pg = postgresql.insert(SyncProcess).values(**values)
        s.execute(
            pg.on_conflict_do_update(
                index_elements=[SyncProcess.owner], set_={"expires_at": pg.excluded.expires_at}
            )
        )
    else:
        lite = sqlite.insert(SyncProcess).values(**values)
        s.execute(
            lite.on_conflict_do_update(
                index_elements=[SyncProcess.owner], set_={"expires_at": lite.excluded.expires_at}
            )
        )
    # Processes that died without leaving are forgotten once their heartbeat is old.
    s.execute(delete(SyncProcess).where(SyncProcess.expires_at < now - _ttl(ttl)))
    return live_processes(s)


def live_processes(s: Session) -> int:
    """Sync processes whose heartbeat is current (at least 1: the caller)."""
    count = s.scalar(
        select(func.count()).select_from(SyncProcess).where(SyncProcess.expires_at > _now(s))
    )
    return max(1, int(count or 0))


def leave(s: Session, owner: str) -> int:
    """A graceful shutdown: every lease of ``owner`` is free at once; returns how many."""
    released = release(s, owner)
    s.execute(delete(SyncProcess).where(SyncProcess.owner == owner))
    return released


# --- leases ------------------------------------------------------------------------------


def claim(s: Session, owner: str, wanted: list[int], limit: int, ttl: float) -> list[Lease]:
    """Take up to ``limit`` of the ``wanted`` accounts that are free or whose lease
    expired; each takeover bumps the epoch."""
    if limit <= 0 or not wanted:
        return []
    _ensure_rows(s, wanted)
    now = _now(s)
    free = (
        select(AccountLease.account_id)
        .where(
            AccountLease.account_id.in_(wanted),
            or_(AccountLease.owner.is_(None), AccountLease.expires_at <= now),
        )
        .order_by(AccountLease.account_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(s.scalars(free))
    if not ids:
        return []
    rows = s.execute(
        update(AccountLease)
        .where(AccountLease.account_id.in_(ids))
        .values(owner=owner, epoch=AccountLease.epoch + 1, expires_at=now + _ttl(ttl))
        .returning(AccountLease.account_id, AccountLease.epoch)
    ).all()
    return [Lease(account_id, owner, epoch) for account_id, epoch in rows]


def _ensure_rows(s: Session, account_ids: list[int]) -> None:
    """A lease row for every account (born free, already expired)."""
    known = set(
        s.scalars(select(AccountLease.account_id).where(AccountLease.account_id.in_(account_ids)))
    )
    missing = [i for i in account_ids if i not in known]
    if not missing:
        return
    rows = [{"account_id": i, "owner": None, "epoch": 0, "expires_at": utcnow()} for i in missing]
    if _is_postgres(s):
        s.execute(postgresql.insert(AccountLease).values(rows).on_conflict_do_nothing())
    else:
        s.execute(insert(AccountLease).values(rows))


def renew(s: Session, owner: str, ttl: float) -> list[Lease]:
    """Extend every unexpired lease of ``owner``; returns those still held. One that
    expired is lost even if nobody took it yet: it is claimed again, with a new epoch."""
    now = _now(s)
    rows = s.execute(
        update(AccountLease)
        .where(AccountLease.owner == owner, AccountLease.expires_at > now)
        .values(expires_at=now + _ttl(ttl))
        .returning(AccountLease.account_id, AccountLease.epoch)
    ).all()
    return [Lease(account_id, owner, epoch) for account_id, epoch in rows]


def release(s: Session, owner: str, account_ids: list[int] | None = None) -> int:
    """Give leases up now (shutdown, rebalancing): another process may claim them at once."""
    stmt = update(AccountLease).where(AccountLease.owner == owner)
    if account_ids is not None:
        stmt = stmt.where(AccountLease.account_id.in_(account_ids))
    res = s.execute(stmt.values(owner=None, expires_at=_now(s)))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def fence(s: Session, lease: Lease) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is still current; the lease row stays
    locked (shared) until the caller's transaction ends, so no takeover overlaps it."""
    held = s.scalar(
        select(AccountLease.account_id)
        .where(
            AccountLease.account_id == lease.account_id,
            AccountLease.owner == lease.owner,
            AccountLease.epoch == lease.epoch,
            AccountLease.expires_at > _now(s),
        )
        .with_for_update(read=True)
    )
    if held is None:
        raise LeaseLost(
            f"this process no longer holds the lease of account {lease.account_id}",
            hint="another crmail process took the account over; nothing was written",
        )


@dataclass(frozen=True, slots=True)
class LeaseRow:
    account_id: int
    owner: str | None
    epoch: int
    expires_at: datetime


def owners(s: Session) -> list[LeaseRow]:
    """Every lease, for operators (``crmail status``) and tests."""
    return [
        LeaseRow(r.account_id, r.owner, r.epoch, r.expires_at)
        for r in s.scalars(select(AccountLease).order_by(AccountLease.account_id))
    ]


def holder(s: Session, account_id: int) -> LeaseRow | None:
    """The account's lease if a process holds it now; None if it is free or expired."""
    r = s.scalar(
        select(AccountLease).where(
            AccountLease.account_id == account_id,
            AccountLease.owner.is_not(None),
            AccountLease.expires_at > _now(s),
        )
    )
    return None if r is None else LeaseRow(r.account_id, r.owner, r.epoch, r.expires_at)


def next_expiry(s: Session, owner: str, wanted: list[int]) -> float | None:
    """Seconds until the first unexpired lease of another process among ``wanted`` runs
    out, by the database's clock (the one that stamped it): None if there is none."""
    if not wanted:
        return None
    now = database_now(s)
    first = s.scalar(
        select(func.min(AccountLease.expires_at)).where(
            AccountLease.account_id.in_(wanted),
            AccountLease.owner.is_not(None),
            AccountLease.owner != owner,
            AccountLease.expires_at > now,
        )
    )
    return None if first is None else (first - now).total_seconds()


def database_now(s: Session) -> datetime:
    """The time the leases are stamped with: PostgreSQL's (its transaction's start, as in
    every statement here), ours on SQLite."""
    if _is_postgres(s):
        return s.execute(select(func.now())).scalar_one()
    return utcnow()


class FencedDatabase(Database):
    """The database as one lease holder's worker sees it: every write first checks the
    lease, in the same transaction (:func:`fence`), and none is tried once the lease ran
    out on this process's own clock (``valid``), even before the database could say so.

    Whatever worker runs the account (IMAP, Gmail), its writes go through here.
    """

    def __init__(self, db: Database, lease: Lease, valid: Callable[[], bool]) -> None:
        # Shares the engine, sessions and single writer; owns nothing of its own.
        self.url = db.url
        self.file = db.file
        self.engine = db.engine
        self._sessions = db._sessions
        self._writer = db._writer
        self.lease = lease
        self._valid = valid

    async def write(self, fn: Callable[[Session], T]) -> T:
        lease = self.lease
        if not self._valid():
            raise LeaseLost(
                f"the lease of account {lease.account_id} ran out before it could be renewed",
                hint="another crmail process may take the account over; nothing was written",
            )

        def fenced(s: Session) -> T:
            fence(s, lease)
            return fn(s)

        return await super().write(fenced)

    def close(self) -> None:
        pass  # the process's database outlives its workers
