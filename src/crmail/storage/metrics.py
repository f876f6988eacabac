"""What an operator watches, read from the database: one snapshot of the whole cluster.

Every figure is the database's, so any process (``GET /metrics``, ``crmail status``)
reports the same cluster; per-process figures are the lease counts per owner. A
snapshot is a handful of aggregate queries over indexed columns, cheap enough to scrape
every 15 s at tens of thousands of accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from crmail.domain.account import ACTIVE, AccountState
from crmail.storage.models import (
    AccountLease,
    Folder,
    MailAccount,
    OutboxAction,
    SyncProcess,
    WebhookDelivery,
    utcnow,
)
from crmail.storage.outbox import DONE, FAILED, PENDING, RUNNING

#: accounts whose folders are compared with the server (the others wait for the user)
_CHECKED = (
    AccountState.CONNECTING,
    AccountState.IMPORTING,
    AccountState.LIVE,
    AccountState.RETRYING,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    #: state → accounts (every known state, 0 included)
    accounts: dict[str, int]
    #: owner (host:pid:random) → unexpired leases it holds (account 0: the default sender)
    leases: dict[str, int]
    #: accounts that should be synced but no process holds
    unowned: int
    #: sync processes with a current heartbeat
    processes: int
    #: outbox (actions and sends owed to mail servers): state → rows, for pending,
    #: running and failed
    outbox: dict[str, int]
    #: seconds the oldest pending action has waited since it was queued (0: none)
    outbox_oldest_age: float
    #: webhook deliveries: pending and failed
    webhooks: dict[str, int]
    #: per account being synced, seconds since its least recently checked folder was
    #: last compared with the server: median and max (None: no account checked yet)
    check_age_p50: float | None
    check_age_max: float | None
    #: sends handed to a mail server in the last hour, and sends given up in it
    sends_last_hour: int
    sends_failed_last_hour: int


def snapshot(s: Session, now: datetime | None = None) -> Snapshot:
    now = now or utcnow()
    by_state = {st.value: 0 for st in AccountState}
    for state, n in s.execute(select(MailAccount.state, func.count()).group_by(MailAccount.state)):
        by_state[state] = n

    held = _held(s)
    active = {st.value for st in ACTIVE}
    unowned = s.scalar(
        select(func.count())
        .select_from(MailAccount)
        .where(MailAccount.state.in_(active), ~MailAccount.id.in_(held))
    )
    owners = dict(
        s.execute(
            select(AccountLease.owner, func.count())
            .where(AccountLease.account_id.in_(held))
            .group_by(AccountLease.owner)
        ).all()
    )

    outbox = {st: 0 for st in (PENDING, RUNNING, FAILED)}
    for state, n in s.execute(
        select(OutboxAction.state, func.count())
        .where(OutboxAction.state.in_(list(outbox)))
        .group_by(OutboxAction.state)
    ):
        outbox[state] = n
    oldest = s.scalar(
        select(func.min(OutboxAction.created_at)).where(OutboxAction.state == PENDING)
    )

    webhooks = {"pending": 0, "failed": 0}
    for state, n in s.execute(
        select(WebhookDelivery.state, func.count())
        .where(WebhookDelivery.state.in_(list(webhooks)))
        .group_by(WebhookDelivery.state)
    ):
        webhooks[state] = n

    ages = sorted(
        max(0.0, (now - checked).total_seconds())
        for checked in s.scalars(
            select(func.min(Folder.last_sync_at))
            .join(MailAccount, MailAccount.id == Folder.account_id)
            .where(MailAccount.state.in_([st.value for st in _CHECKED]))
            .group_by(Folder.account_id)
        )
        if checked is not None
    )

    hour_ago = now - timedelta(hours=1)
    sends = dict(
        s.execute(
            select(OutboxAction.state, func.count())
            .where(
                OutboxAction.kind == "send",
                OutboxAction.state.in_([DONE, FAILED]),
                OutboxAction.updated_at >= hour_ago,
            )
            .group_by(OutboxAction.state)
        ).all()
    )

    return Snapshot(
        accounts=by_state,
        leases={str(o): int(n) for o, n in owners.items()},
        unowned=int(unowned or 0),
        processes=int(
            s.scalar(
                select(func.count())
                .select_from(SyncProcess)
                .where(SyncProcess.expires_at > _now(s))
            )
            or 0
        ),
        outbox=outbox,
        outbox_oldest_age=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        webhooks=webhooks,
        check_age_p50=ages[(len(ages) - 1) // 2] if ages else None,
        check_age_max=ages[-1] if ages else None,
        sends_last_hour=int(sends.get(DONE, 0)),
        sends_failed_last_hour=int(sends.get(FAILED, 0)),
    )


def _now(s: Session) -> Any:
    """The database's clock on PostgreSQL, as the leases are written (storage.leases)."""
    return func.now() if s.get_bind().dialect.name == "postgresql" else utcnow()


def _held(s: Session) -> Select[Any]:
    """Accounts whose lease a process holds now."""
    return select(AccountLease.account_id).where(
        AccountLease.owner.is_not(None), AccountLease.expires_at > _now(s)
    )
