"""Change-notification subscriptions against the fake Graph: the validation handshake,
clientState checked on every notification, lifecycle events, renewal and expiry. The
receiving endpoint is a small app on loopback built on crmail's pure helper."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from crmail.errors import InvalidInput, ProviderRejected
from crmail.providers.graph.notifications import (
    NotificationBatch,
    read_notifications,
    validation_token,
)
from tests.fakes.server import LoopbackServer
from tests.providers.graph.conftest import Graph
from tests.providers.graph.mail import raw_message

RESOURCE = "me/mailFolders('inbox')/messages"


@dataclass
class Receiver:
    """crmail's side: echoes the handshake, keeps the batches it accepted."""

    url: str = ""
    echo: bool = True
    client_states: dict[str, str] = field(default_factory=dict)
    batches: list[NotificationBatch] = field(default_factory=list)
    validations: int = 0

    async def endpoint(self, request: Request) -> Response:
        token = validation_token(request.query_params)
        if token is not None:
            self.validations += 1
            return PlainTextResponse(token if self.echo else "nope")
        batch = read_notifications(await request.body(), self.client_states.get)
        self.batches.append(batch)
        return Response(status_code=202)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    app = Starlette(routes=[Route("/graph/notify", found.endpoint, methods=["POST"])])
    with LoopbackServer(app) as server:
        found.url = server.url + "/graph/notify"
        yield found


@pytest.fixture
def fresh(receiver: Receiver) -> Receiver:
    receiver.echo, receiver.validations = True, 0
    receiver.batches.clear()
    receiver.client_states.clear()
    return receiver


def soon(days: float = 2) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


async def subscribe(graph: Graph, receiver: Receiver, state: str = "s3cret") -> str:
    sub = await graph.client.create_subscription(
        notification_url=receiver.url,
        lifecycle_notification_url=receiver.url,
        resource=RESOURCE,
        expiration=soon(),
        client_state=state,
    )
    receiver.client_states[sub.id] = state
    return sub.id


async def test_the_handshake_is_echoed_and_notifications_carry_client_state(
    graph: Graph, fresh: Receiver
) -> None:
    sub_id = await subscribe(graph, fresh)
    assert fresh.validations == 2  # notification and lifecycle URLs
    msg = graph.box.deliver(raw_message("Pushed"))
    graph.box.mark_read(msg.id)
    graph.box.deliver(raw_message("Elsewhere"), folder="archive")  # not subscribed
    assert graph.fake.flush() == [202]
    [batch] = fresh.batches
    assert [(c.change_type, c.resource_id) for c in batch.changes] == [
        ("created", msg.id),
        ("updated", msg.id),
    ]
    assert batch.rejected == 0 and batch.needs_delta == {sub_id}


async def test_a_failed_handshake_creates_no_subscription(graph: Graph, fresh: Receiver) -> None:
    fresh.echo = False
    before = len(graph.fake.subscriptions)
    with pytest.raises(ProviderRejected) as caught:
        await subscribe(graph, fresh)
    assert "validation" in caught.value.message
    assert len(graph.fake.subscriptions) == before


async def test_a_wrong_client_state_is_dropped(graph: Graph, fresh: Receiver) -> None:
    sub_id = await subscribe(graph, fresh)
    fresh.client_states[sub_id] = "what crmail expects"  # the fake sends "s3cret"
    graph.box.deliver(raw_message("Forged?"))
    graph.fake.flush()
    [batch] = fresh.batches
    assert batch.changes == () and batch.rejected == 1 and not batch.needs_delta


async def test_lifecycle_notifications_are_parsed(graph: Graph, fresh: Receiver) -> None:
    sub_id = await subscribe(graph, fresh)
    for event in ("reauthorizationRequired", "missed", "subscriptionRemoved"):
        assert graph.fake.lifecycle(sub_id, event) == 202
    assert sub_id not in graph.fake.subscriptions
    events = [n.event for b in fresh.batches for n in b.lifecycle]
    assert events == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
    assert fresh.batches[0].subscriptions_to_renew == {sub_id}
    assert fresh.batches[1].needs_delta == {sub_id} == fresh.batches[2].needs_delta


async def test_renew_delete_and_expiry(graph: Graph, fresh: Receiver) -> None:
    sub_id = await subscribe(graph, fresh)
    renewed = await graph.client.renew_subscription(sub_id, soon(days=6))
    assert renewed.expiration > soon(days=5)
    with pytest.raises(ProviderRejected):  # over Graph's maximum for mail
        await graph.client.renew_subscription(sub_id, soon(days=8))
    await graph.client.delete_subscription(sub_id)
    assert sub_id not in graph.fake.subscriptions

    expiring = await subscribe(graph, fresh)
    graph.fake.expire_subscription(expiring)
    graph.box.deliver(raw_message("After expiry"))
    assert graph.fake.flush() == []  # an expired subscription notifies nobody
    with pytest.raises(ProviderRejected) as caught:
        await graph.client.renew_subscription(expiring, soon())
    assert "create a new one" in caught.value.message


def test_the_helper_refuses_what_is_not_a_notification_batch() -> None:
    with pytest.raises(InvalidInput):
        read_notifications(b"not json", {}.get)
    with pytest.raises(InvalidInput):
        read_notifications(b'{"value": 3}', {}.get)
    assert validation_token({"validationToken": ""}) is None
    unknown = read_notifications(
        b'{"value": [{"subscriptionId": "x", "clientState": "y", "lifecycleEvent": "odd"}]}',
        {"x": "y"}.get,
    )
    assert unknown.rejected == 1 and unknown.lifecycle == ()
