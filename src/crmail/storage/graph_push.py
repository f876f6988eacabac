"""Microsoft Graph change-notification subscriptions: one row per account (push).

The GraphWorker creates, renews and replaces its account's row; the notification
endpoint only reads rows by Graph's subscription id, and records what a lifecycle
notification asks (a renewal, or a subscription Graph removed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crmail.storage.models import GraphSubscription


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    account_id: int
    subscription_id: str
    resource: str
    notification_url: str
    #: the sealed clientState (SecretBox)
    client_state: bytes
    expires_at: datetime
    renew_requested: bool


def _info(row: GraphSubscription) -> StoredSubscription:
    return StoredSubscription(
        row.account_id,
        row.subscription_id,
        row.resource,
        row.notification_url,
        row.client_state,
        row.expires_at,
        row.renew_requested,
    )


def of_account(s: Session, account_id: int) -> StoredSubscription | None:
    row = s.get(GraphSubscription, account_id)
    return None if row is None else _info(row)


def by_ids(s: Session, subscription_ids: Iterable[str]) -> dict[str, StoredSubscription]:
    """The stored subscriptions among ``subscription_ids`` (unknown ids are left out)."""
    wanted = sorted(set(subscription_ids))
    if not wanted:
        return {}
    rows = s.scalars(select(GraphSubscription).where(GraphSubscription.subscription_id.in_(wanted)))
    return {row.subscription_id: _info(row) for row in rows}


def save(
    s: Session,
    account_id: int,
    *,
    subscription_id: str,
    resource: str,
    notification_url: str,
    client_state: bytes,
    expires_at: datetime,
) -> None:
    """The account's subscription is now this one (a new one replaces the old row)."""
    s.execute(delete(GraphSubscription).where(GraphSubscription.account_id == account_id))
    s.flush()
    s.add(
        GraphSubscription(
            account_id=account_id,
            subscription_id=subscription_id,
            resource=resource,
            notification_url=notification_url,
            client_state=client_state,
            expires_at=expires_at,
            renew_requested=False,
        )
    )


def renewed(s: Session, subscription_id: str, expires_at: datetime) -> None:
    s.execute(
        update(GraphSubscription)
        .where(GraphSubscription.subscription_id == subscription_id)
        .values(expires_at=expires_at, renew_requested=False)
    )


def lifecycle(s: Session, *, renew: Iterable[str], removed: Iterable[str]) -> None:
    """Graph asked to renew some subscriptions and removed others: their accounts'
    workers renew the first and create the second again."""
    renew, removed = list(renew), list(removed)
    if renew:
        s.execute(
            update(GraphSubscription)
            .where(GraphSubscription.subscription_id.in_(renew))
            .values(renew_requested=True)
        )
    if removed:
        s.execute(delete(GraphSubscription).where(GraphSubscription.subscription_id.in_(removed)))
