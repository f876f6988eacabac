"""The event outbox, endpoints and the delivery bookkeeping, straight on the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crmail.errors import Forbidden, InvalidInput, NotFound
from crmail.services import Services
from crmail.storage import crm, events
from crmail.storage.crm import UserInfo
from crmail.storage.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


@dataclass(frozen=True)
class Two:
    admin: UserInfo
    member: UserInfo
    other_admin: UserInfo


@pytest.fixture
def two(services: Services) -> Two:
    def make(s: Session) -> Two:
        a = crm.create_workspace(s, "A").id
        b = crm.create_workspace(s, "B").id
        return Two(
            crm.create_user(s, a, "admin@a.test", role="admin").user,
            crm.create_user(s, a, "member@a.test").user,
            crm.create_user(s, b, "admin@b.test", role="admin").user,
        )

    return services.db.run(make)


def endpoint(
    services: Services, user: UserInfo, url: str = "https://hooks.example.com/", **kw: object
) -> events.NewEndpoint:
    return services.db.run(
        lambda s: events.create_endpoint(s, user, services.box, url=url, **kw)  # type: ignore[arg-type]
    )


def count(services: Services, model: type[WebhookEvent] | type[WebhookDelivery]) -> int:
    return services.db.run(lambda s: s.scalar(select(func.count()).select_from(model)) or 0)


def targets(services: Services, public_id: str) -> set[int]:
    def q(s: Session) -> set[int]:
        return set(
            s.scalars(
                select(WebhookDelivery.endpoint_id)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookEvent.public_id == public_id)
            )
        )

    return services.db.run(q)


def test_no_endpoint_no_rows(services: Services, two: Two) -> None:
    ws = two.admin.workspace_id
    assert services.db.run(lambda s: events.emit(s, ws, "message.received", {"x": 1})) is None
    assert count(services, WebhookEvent) == 0


def test_emit_reaches_only_subscribed_active_endpoints_of_the_workspace(
    services: Services, two: Two
) -> None:
    every = endpoint(services, two.admin).endpoint.id
    sent_only = endpoint(services, two.admin, events=["message.sent"]).endpoint.id
    endpoint(services, two.admin, active=False)
    endpoint(services, two.other_admin)
    ws = two.admin.workspace_id

    received = services.db.run(lambda s: events.emit(s, ws, "message.received", {"m": 1}))
    assert received is not None and received.startswith("evt_")
    assert targets(services, received) == {every}

    sent = services.db.run(lambda s: events.emit(s, ws, "message.sent", {"m": 2}))
    assert sent is not None and sent != received
    assert targets(services, sent) == {every, sent_only}


def test_only_unsubscribed_endpoints_means_nothing_is_written(services: Services, two: Two) -> None:
    endpoint(services, two.admin, events=["message.sent"])
    ws = two.admin.workspace_id
    assert services.db.run(lambda s: events.emit(s, ws, "inbox.updated", {})) is None
    assert count(services, WebhookEvent) == 0


def test_a_rolled_back_change_leaves_no_event(services: Services, two: Two) -> None:
    endpoint(services, two.admin)
    ws = two.admin.workspace_id
    emitted: list[str | None] = []

    def change_then_fail(s: Session) -> None:
        emitted.append(events.emit(s, ws, "message.linked", {"message_id": 1}))
        raise RuntimeError("the change failed after the event was emitted")

    with pytest.raises(RuntimeError):
        services.db.run(change_then_fail)
    assert emitted and emitted[0] is not None  # the event was written, in that transaction
    assert count(services, WebhookEvent) == 0
    assert count(services, WebhookDelivery) == 0


def test_unknown_type_is_refused(services: Services, two: Two) -> None:
    with pytest.raises(InvalidInput):
        services.db.run(lambda s: events.emit(s, two.admin.workspace_id, "message.eaten", {}))
    # the test ping is not an event endpoints subscribe to
    with pytest.raises(InvalidInput):
        endpoint(services, two.admin, events=[events.TEST_EVENT])


def test_secret_is_shown_once_and_sealed_at_rest(services: Services, two: Two) -> None:
    new = endpoint(services, two.admin)
    assert new.secret.startswith("whsec_") and len(new.secret) > 40
    stored = services.db.run(lambda s: s.get_one(WebhookEndpoint, new.endpoint.id).secret)
    assert new.secret.encode() not in stored
    assert services.box.open(stored) == {"secret": new.secret}
    assert endpoint(services, two.admin).secret != new.secret


def test_only_admins_of_the_workspace(services: Services, two: Two) -> None:
    ep = endpoint(services, two.admin).endpoint.id
    with pytest.raises(Forbidden):
        endpoint(services, two.member)
    with pytest.raises(Forbidden):
        services.db.run(lambda s: events.list_endpoints(s, two.member))
    with pytest.raises(Forbidden):
        services.db.run(lambda s: events.get_endpoint(s, two.member, ep))
    for fn in (events.get_endpoint, events.delete_endpoint, events.emit_test):
        with pytest.raises(NotFound):
            services.db.run(lambda s, fn=fn: fn(s, two.other_admin, ep))  # type: ignore[misc]
    with pytest.raises(NotFound):
        services.db.run(lambda s: events.delivery_log(s, two.other_admin.workspace_id, ep))
    assert services.db.run(lambda s: events.list_endpoints(s, two.other_admin)) == []


def test_update_and_delete(services: Services, two: Two) -> None:
    ep = endpoint(services, two.admin).endpoint.id
    view = services.db.run(
        lambda s: events.update_endpoint(
            s, two.admin, ep, events=["message.sent", "message.sent"], active=False
        )
    )
    assert view.events == ("message.sent",) and not view.active
    assert view.url == "https://hooks.example.com/"  # left out: unchanged
    ws = two.admin.workspace_id
    services.db.run(lambda s: events.emit_test(s, two.admin, ep))
    assert count(services, WebhookDelivery) == 1
    services.db.run(lambda s: events.delete_endpoint(s, two.admin, ep))
    assert count(services, WebhookDelivery) == 0
    assert services.db.run(lambda s: events.list_endpoints(s, two.admin)) == []
    assert services.db.run(lambda s: events.emit(s, ws, "message.sent", {})) is None


def test_due_deliveries_and_record_attempt(services: Services, two: Two) -> None:
    ep = endpoint(services, two.admin).endpoint.id
    ws = two.admin.workspace_id
    public = services.db.run(lambda s: events.emit(s, ws, "message.sent", {"message_id": 7}))
    now = datetime.now(UTC) + timedelta(seconds=1)

    (due,) = services.db.run(lambda s: events.due_deliveries(s, now, 10))
    assert (due.event_id, due.event_type, due.payload, due.attempts) == (
        public,
        "message.sent",
        {"message_id": 7},
        0,
    )
    assert services.box.open(due.sealed_secret)["secret"].startswith("whsec_")
    # not due before its time
    assert services.db.run(lambda s: events.due_deliveries(s, now - timedelta(hours=1), 10)) == []

    later = now + timedelta(seconds=30)
    state = services.db.run(
        lambda s: events.record_attempt(
            s, due.id, now=now, delivered=False, status=503, error="HTTP 503", retry_at=later
        )
    )
    assert state == "pending"
    assert services.db.run(lambda s: events.due_deliveries(s, now, 10)) == []
    assert len(services.db.run(lambda s: events.due_deliveries(s, later, 10))) == 1

    # a paused endpoint's deliveries wait
    services.db.run(lambda s: events.update_endpoint(s, two.admin, ep, active=False))
    assert services.db.run(lambda s: events.due_deliveries(s, later, 10)) == []
    services.db.run(lambda s: events.update_endpoint(s, two.admin, ep, active=True))

    state = services.db.run(
        lambda s: events.record_attempt(
            s, due.id, now=later, delivered=True, status=200, error=None, retry_at=None
        )
    )
    assert state == "delivered"
    (log,) = services.db.run(lambda s: events.delivery_log(s, ws, ep))
    assert (log.state, log.attempts, log.last_status, log.last_error) == (
        "delivered",
        2,
        200,
        None,
    )
    assert log.delivered_at == later and log.next_attempt_at is None
    # a late duplicate outcome does not change a finished delivery
    again = services.db.run(
        lambda s: events.record_attempt(
            s, due.id, now=later, delivered=False, status=500, error="x", retry_at=None
        )
    )
    assert again == "delivered"
    assert services.db.run(lambda s: events.delivery_log(s, ws, ep))[0].attempts == 2


def test_giving_up_marks_failed(services: Services, two: Two) -> None:
    endpoint(services, two.admin)
    ws = two.admin.workspace_id
    services.db.run(lambda s: events.emit(s, ws, "account.state_changed", {"state": "error"}))
    now = datetime.now(UTC) + timedelta(seconds=1)
    (due,) = services.db.run(lambda s: events.due_deliveries(s, now, 10))
    state = services.db.run(
        lambda s: events.record_attempt(
            s, due.id, now=now, delivered=False, status=None, error="refused", retry_at=None
        )
    )
    assert state == "failed"
    assert services.db.run(lambda s: events.due_deliveries(s, now + timedelta(days=9), 10)) == []
