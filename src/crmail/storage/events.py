"""Webhook events: the outbox of what happened, endpoints, and the delivery log.

``emit`` writes an event and its deliveries in the *caller's* transaction (the
transactional-outbox pattern): an event exists if and only if the change it describes
committed, and a crash between "change stored" and "webhook sent" loses nothing, because
the sender only ever reads committed rows. Delivery is at-least-once; receivers
deduplicate on the public event id (``evt_...``), which every retry repeats.

Like ``storage.crm``, functions take a ``Session`` first and return frozen dataclasses.
Endpoint lookups are scoped to a workspace: another workspace's id is "not found".
Only admins manage endpoints (a webhook URL receives every event of the workspace).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from crmail.crypto import SecretBox
from crmail.errors import Forbidden, InvalidInput, NotFound
from crmail.storage.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from crmail.storage.views import UNSET, Unset, UserInfo

#: what an endpoint can subscribe to
EVENT_TYPES: tuple[str, ...] = (
    "message.received",
    "message.sent",
    "message.send_failed",
    "message.linked",
    "message.skipped",
    "inbox.updated",
    "account.state_changed",
    "meeting.created",
    "meeting.updated",
    "meeting.cancelled",
)
#: the ping sent by "test this endpoint"; never subscribed to, always sent to one endpoint
TEST_EVENT = "webhook.test"

#: bounds the fan-out of one emit (every endpoint gets one delivery row per event)
MAX_ENDPOINTS = 20
MAX_LOG = 200
SECRET_PREFIX = "whsec_"


# --- value objects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    id: int
    url: str
    #: subscribed event types; empty: all of them
    events: tuple[str, ...]
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    endpoint: EndpointInfo
    #: the plain signing secret (``whsec_<base64>``); shown once, stored sealed
    secret: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """Everything the sender needs for one attempt, read in one query."""

    id: int
    endpoint_id: int
    url: str
    #: the endpoint's SecretBox-sealed secret; opened by the sender, never logged
    sealed_secret: bytes
    attempts: int
    event_id: str
    event_type: str
    workspace_id: int
    created_at: datetime
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    id: int
    event_id: str
    event_type: str
    #: pending | delivered | failed
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


# --- emitting ---------------------------------------------------------------------------------


def _new_event(
    s: Session, workspace_id: int, type: str, payload: dict[str, object]
) -> WebhookEvent:
    ev = WebhookEvent(
        public_id=f"evt_{uuid.uuid4().hex}",
        workspace_id=workspace_id,
        type=type,
        payload=payload,
    )
    s.add(ev)
    s.flush()
    return ev


def emit(s: Session, workspace_id: int, type: str, payload: dict[str, object]) -> str | None:
    """Record that ``type`` happened, for every active endpoint subscribed to it.

    Runs in the caller's transaction: roll it back and the event never existed. Returns
    the public event id, or None (and writes nothing) when no endpoint wants the event,
    so workspaces without webhooks pay one indexed query per change.
    """
    if type not in EVENT_TYPES:
        raise InvalidInput(f"unknown webhook event type {type!r}")
    rows = s.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.active.is_(True)
        )
    ).all()
    wanted = [eid for eid, events in rows if not events or type in events]
    if not wanted:
        return None
    ev = _new_event(s, workspace_id, type, payload)
    for endpoint_id in sorted(wanted):
        s.add(WebhookDelivery(endpoint_id=endpoint_id, event_id=ev.id, next_attempt_at=utcnow()))
    s.flush()
    return ev.public_id


def emit_test(s: Session, user: UserInfo, endpoint_id: int) -> str:
    """Queue a ``webhook.test`` ping to this one endpoint (active or not: it is a test)."""
    ep = _endpoint(s, user, endpoint_id)
    ev = _new_event(s, ep.workspace_id, TEST_EVENT, {"endpoint_id": ep.id, "requested_by": user.id})
    s.add(WebhookDelivery(endpoint_id=ep.id, event_id=ev.id, next_attempt_at=utcnow()))
    s.flush()
    return ev.public_id


# --- endpoints (admins only) --------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes (the HMAC key)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def require_admin(user: UserInfo) -> None:
    if not user.is_admin:
        raise Forbidden("only workspace admins manage webhooks")


def _in_workspace(s: Session, workspace_id: int, endpoint_id: int) -> WebhookEndpoint:
    ep = s.get(WebhookEndpoint, endpoint_id)
    if ep is None or ep.workspace_id != workspace_id:
        raise NotFound(f"webhook {endpoint_id} not found")
    return ep


def _endpoint(s: Session, user: UserInfo, endpoint_id: int) -> WebhookEndpoint:
    # The role first: a member learns nothing about which ids exist.
    require_admin(user)
    return _in_workspace(s, user.workspace_id, endpoint_id)


def _event_list(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown event type(s): {', '.join(unknown)}",
            hint=f"known types: {', '.join(EVENT_TYPES)}",
        )
    return sorted(set(events))


def _info(ep: WebhookEndpoint) -> EndpointInfo:
    return EndpointInfo(ep.id, ep.url, tuple(ep.events or ()), ep.active, ep.created_at)


def create_endpoint(
    s: Session,
    user: UserInfo,
    box: SecretBox,
    *,
    url: str,
    events: Sequence[str] = (),
    active: bool = True,
) -> NewEndpoint:
    """Store an endpoint whose ``url`` the caller has already checked (``check_url``)."""
    require_admin(user)
    count = len(
        s.scalars(
            select(WebhookEndpoint.id).where(WebhookEndpoint.workspace_id == user.workspace_id)
        ).all()
    )
    if count >= MAX_ENDPOINTS:
        raise InvalidInput(f"a workspace can have at most {MAX_ENDPOINTS} webhook endpoints")
    secret = new_secret()
    ep = WebhookEndpoint(
        workspace_id=user.workspace_id,
        url=url,
        secret=box.seal({"secret": secret}),
        events=_event_list(events),
        active=active,
    )
    s.add(ep)
    s.flush()
    return NewEndpoint(_info(ep), secret)


def list_endpoints(s: Session, user: UserInfo) -> list[EndpointInfo]:
    require_admin(user)
    rows = s.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.workspace_id == user.workspace_id)
        .order_by(WebhookEndpoint.id)
    )
    return [_info(ep) for ep in rows]


def get_endpoint(s: Session, user: UserInfo, endpoint_id: int) -> EndpointInfo:
    return _info(_endpoint(s, user, endpoint_id))


def update_endpoint(
    s: Session,
    user: UserInfo,
    endpoint_id: int,
    *,
    url: str | Unset = UNSET,
    events: Sequence[str] | Unset = UNSET,
    active: bool | Unset = UNSET,
) -> EndpointInfo:
    ep = _endpoint(s, user, endpoint_id)
    if not isinstance(url, Unset):
        ep.url = url
    if not isinstance(events, Unset):
        ep.events = _event_list(events)
    if not isinstance(active, Unset):
        ep.active = active
    s.flush()
    return _info(ep)


def delete_endpoint(s: Session, user: UserInfo, endpoint_id: int) -> None:
    """Forget the endpoint; its pending deliveries go with it (ON DELETE CASCADE)."""
    ep = _endpoint(s, user, endpoint_id)
    # Explicit rather than relying on the database: SQLite enforces the cascade only with
    # PRAGMA foreign_keys, which a tool opening the file by hand may not set.
    for d in s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id)):
        s.delete(d)
    s.delete(ep)
    s.flush()


# --- the sender's side ---------------------------------------------------------------------------


def due_deliveries(
    s: Session, now: datetime, limit: int = 50, *, hold: timedelta | None = None
) -> list[DueDelivery]:
    """Pending deliveries whose time has come, of active endpoints, oldest first.

    Deliveries of a paused endpoint wait (they resume when it is re-activated).

    With ``hold`` they are claimed: not due again for that long (the attempt records
    its outcome before), skipping rows another process is claiming (SKIP LOCKED on
    PostgreSQL), so of several processes sending webhooks, one attempts each delivery.
    One that dies mid-attempt leaves it due again once the hold is over.
    """
    query = (
        select(WebhookDelivery, WebhookEndpoint, WebhookEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.state == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.active.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if hold is not None:
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    rows = s.execute(query).all()
    if hold is not None and rows:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([d.id for d, _, _ in rows]))
            .values(next_attempt_at=now + hold)
        )
    return [
        DueDelivery(
            id=d.id,
            endpoint_id=ep.id,
            url=ep.url,
            sealed_secret=ep.secret,
            attempts=d.attempts,
            event_id=ev.public_id,
            event_type=ev.type,
            workspace_id=ev.workspace_id,
            created_at=ev.created_at,
            payload=dict(ev.payload or {}),
        )
        for d, ep, ev in rows
    ]


def record_attempt(
    s: Session,
    delivery_id: int,
    *,
    now: datetime,
    delivered: bool,
    status: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> str | None:
    """Store the outcome of one attempt; returns the new state (None if the row is gone).

    ``delivered`` wins; otherwise ``retry_at`` None means "give up" (state failed).
    A delivery no longer pending (delivered by a concurrent attempt, or the endpoint
    deleted meanwhile) is left as it is.
    """
    d = s.get(WebhookDelivery, delivery_id)
    if d is None or d.state != "pending":
        return None if d is None else d.state
    d.attempts += 1
    d.last_status = status
    d.last_error = error[:1000] if error else None
    if delivered:
        d.state = "delivered"
        d.delivered_at = now
    elif retry_at is None:
        d.state = "failed"
    else:
        d.next_attempt_at = retry_at
    s.flush()
    return d.state


#: events forgotten per purge transaction: the single writer is never held long
PURGE_BATCH = 1000


def purge(s: Session, before: datetime, limit: int = PURGE_BATCH) -> int:
    """Forget up to ``limit`` events created before ``before`` whose deliveries are all
    finished (delivered or failed), with their delivery log; returns how many.

    Deliveries still pending (a paused endpoint, a retry due later) keep their event,
    however old: nothing owed to a receiver is dropped.
    """
    owed = exists().where(
        WebhookDelivery.event_id == WebhookEvent.id, WebhookDelivery.state == "pending"
    )
    ids = list(
        s.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.created_at < before, ~owed)
            .order_by(WebhookEvent.id)
            .limit(limit)
        )
    )
    if ids:
        s.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
        s.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
    return len(ids)


def delivery_log(
    s: Session, workspace_id: int, endpoint_id: int, limit: int = 50
) -> list[DeliveryInfo]:
    """The endpoint's deliveries, newest event first (callers check the role)."""
    ep = _in_workspace(s, workspace_id, endpoint_id)
    rows = s.execute(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == ep.id)
        .order_by(WebhookEvent.id.desc())
        .limit(max(1, min(limit, MAX_LOG)))
    ).all()
    return [
        DeliveryInfo(
            id=d.id,
            event_id=ev.public_id,
            event_type=ev.type,
            state=d.state,
            attempts=d.attempts,
            last_status=d.last_status,
            last_error=d.last_error,
            next_attempt_at=d.next_attempt_at if d.state == "pending" else None,
            delivered_at=d.delivered_at,
            created_at=ev.created_at,
        )
        for d, ev in rows
    ]
