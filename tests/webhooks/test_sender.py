"""The sender against a real HTTP receiver on loopback: signing, retries, give-up, SSRF."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.orm import Session

from crmail import __version__
from crmail.services import Services
from crmail.storage import crm, events
from crmail.storage.crm import UserInfo
from crmail.storage.events import DeliveryInfo
from crmail.sync.webhooks import WebhookSender, verify_signature
from tests.webhooks.conftest import Clock
from tests.webhooks.receiver import Receiver


@dataclass
class Setup:
    services: Services
    admin: UserInfo
    endpoint_id: int
    secret: str

    @property
    def ws(self) -> int:
        return self.admin.workspace_id

    def emit(self, type: str = "message.received", payload: dict[str, object] | None = None) -> str:
        data: dict[str, object] = {"message_id": 1} if payload is None else payload
        public = self.services.db.run(lambda s: events.emit(s, self.ws, type, data))
        assert public is not None
        return public

    def log(self) -> list[DeliveryInfo]:
        return self.services.db.run(lambda s: events.delivery_log(s, self.ws, self.endpoint_id))


def make_setup(services: Services, url: str) -> Setup:
    def make(s: Session) -> Setup:
        ws = crm.create_workspace(s, "Acme").id
        admin = crm.create_user(s, ws, "boss@acme.test", role="admin").user
        new = events.create_endpoint(s, admin, services.box, url=url)
        return Setup(services, admin, new.endpoint.id, new.secret)

    return services.db.run(make)


#: the sender's wait for an answer: short enough for a hanging receiver to cost little,
#: long enough that a prompt one is not taken for hanging on a loaded CI machine (0.5 s was)
SENDER_TIMEOUT = 2.0


@pytest.fixture
def setup(services: Services, receiver: Receiver) -> Setup:
    return make_setup(services, receiver.url)


@pytest.fixture
async def sender(services: Services, clock: Clock) -> AsyncIterator[WebhookSender]:
    s = WebhookSender(
        services.db, services.box, allow_http_loopback=True, timeout=SENDER_TIMEOUT, clock=clock
    )
    try:
        yield s
    finally:
        await s.stop()


async def test_delivers_a_signed_event(
    setup: Setup, sender: WebhookSender, receiver: Receiver
) -> None:
    public = setup.emit("message.skipped", {"message_id": 3, "reason": "bulk"})
    assert await sender.run_once() == 1

    (req,) = receiver.requests
    assert req.path == "/hook"
    h = {k.lower(): v for k, v in req.headers.items()}
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == f"crmail-webhooks/{__version__}"
    assert h["webhook-id"] == public
    assert h["host"].startswith("127.0.0.1:")
    assert h["webhook-signature"].startswith("v1,")
    assert verify_signature(setup.secret, req.headers, req.body)
    body = json.loads(req.body)
    assert body["id"] == public and body["type"] == "message.skipped"
    assert body["workspace_id"] == setup.ws
    assert body["data"] == {"message_id": 3, "reason": "bulk"}
    assert body["created_at"].endswith("Z")
    # the signature covers the body: another secret or a changed body does not verify
    assert not verify_signature(events.new_secret(), req.headers, req.body)
    assert not verify_signature(setup.secret, req.headers, req.body.replace(b"bulk", b"spam"))

    (d,) = setup.log()
    assert (d.state, d.attempts, d.last_status, d.last_error) == ("delivered", 1, 200, None)
    # delivered once: nothing more to send
    assert await sender.run_once() == 0
    assert len(receiver.requests) == 1


async def test_retries_with_backoff_then_succeeds_with_the_same_id(
    setup: Setup, sender: WebhookSender, receiver: Receiver, clock: Clock
) -> None:
    receiver.fail_next = 2
    public = setup.emit()

    await sender.run_once()
    (d,) = setup.log()
    assert (d.state, d.attempts, d.last_status) == ("pending", 1, 500)
    assert d.last_error is not None and "boom" in d.last_error
    # backoff: not retried at once
    assert await sender.run_once() == 0
    assert len(receiver.requests) == 1

    clock.advance(5 * 1.2 + 1)  # first delay: 5 s ± 20 %
    await sender.run_once()
    assert setup.log()[0].attempts == 2 and setup.log()[0].state == "pending"
    clock.advance(22)  # second delay is 30 s ± 20 %, at least 24 s: too early
    assert await sender.run_once() == 0
    clock.advance(15)  # 37 s: past the longest second delay (36 s)
    await sender.run_once()

    (d,) = setup.log()
    assert (d.state, d.attempts, d.last_status, d.last_error) == ("delivered", 3, 200, None)
    assert len(receiver.requests) == 3
    # at-least-once: every attempt carries the same id (receivers deduplicate on it),
    # each freshly signed, and the same body
    assert {r.headers["Webhook-Id"] for r in receiver.requests} == {public}
    assert len({r.body for r in receiver.requests}) == 1
    assert all(verify_signature(setup.secret, r.headers, r.body) for r in receiver.requests)


async def test_gives_up_after_max_attempts(
    services: Services, setup: Setup, receiver: Receiver, clock: Clock
) -> None:
    receiver.fail_next = 100
    sender = WebhookSender(
        services.db,
        services.box,
        allow_http_loopback=True,
        backoff=(1,),
        max_attempts=3,
        clock=clock,
    )
    try:
        setup.emit()
        for _ in range(5):
            await sender.run_once()
            clock.advance(2)
    finally:
        await sender.stop()
    (d,) = setup.log()
    assert (d.state, d.attempts, d.last_status) == ("failed", 3, 500)
    assert len(receiver.requests) == 3


async def test_a_hanging_receiver_times_out_and_is_retried(
    setup: Setup, sender: WebhookSender, receiver: Receiver, clock: Clock
) -> None:
    receiver.hang_next = 1
    setup.emit()
    await asyncio.wait_for(sender.run_once(), SENDER_TIMEOUT + 5)
    (d,) = setup.log()
    assert d.state == "pending" and d.last_status is None
    assert d.last_error is not None and "timeout" in d.last_error
    clock.advance(10)
    await sender.run_once()
    assert setup.log()[0].state == "delivered"


async def test_redirects_are_not_followed(
    setup: Setup, sender: WebhookSender, receiver: Receiver
) -> None:
    receiver.fail_next, receiver.fail_status = 1, 307
    setup.emit()
    await sender.run_once()
    (d,) = setup.log()
    assert (d.state, d.last_status) == ("pending", 307)
    assert len(receiver.requests) == 1


async def test_a_host_name_is_resolved_and_kept_in_the_host_header(
    services: Services, sender: WebhookSender, receiver: Receiver
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    setup = make_setup(services, f"http://localhost:{port}/hook")
    setup.emit()
    await sender.run_once()
    assert setup.log()[0].state == "delivered"
    (req,) = receiver.requests
    assert {k.lower(): v for k, v in req.headers.items()}["host"] == f"localhost:{port}"


async def test_https_goes_to_the_checked_address_with_the_name_for_tls(
    services: Services, clock: Clock
) -> None:
    # What the pinning hands to the connection layer: the resolved address in the URL,
    # the name in Host and in the TLS server name (so the certificate is checked
    # against the name). A mock transport, as no public TLS server is reachable here.
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender = WebhookSender(
        services.db,
        services.box,
        allow_http_loopback=True,
        clock=clock,
        transport=httpx.MockTransport(answer),
    )
    setup = make_setup(services, "https://localhost:8443/in")
    setup.emit()
    try:
        await sender.run_once()
    finally:
        await sender.stop()
    (req,) = seen
    assert req.url.host in ("127.0.0.1", "::1") and req.url.port == 8443
    assert req.url.path == "/in"
    assert req.headers["host"] == "localhost:8443"
    assert req.extensions["sni_hostname"] == "localhost"
    assert setup.log()[0].state == "delivered"


async def test_a_closed_port_is_a_network_error(
    services: Services, sender: WebhookSender, receiver: Receiver
) -> None:
    # a port that was just open and is now closed: connection refused
    with Receiver() as gone:
        url = gone.url
    setup = make_setup(services, url)
    setup.emit()
    await sender.run_once()
    (d,) = setup.log()
    assert d.state == "pending" and d.last_status is None and d.last_error
    assert "Connect" in d.last_error


async def test_loopback_is_refused_at_delivery_without_the_flag(
    services: Services, setup: Setup, receiver: Receiver, clock: Clock
) -> None:
    # The endpoint was saved while loopback was allowed; the setting is now off.
    strict = WebhookSender(services.db, services.box, clock=clock)
    try:
        setup.emit()
        await strict.run_once()
    finally:
        await strict.stop()
    assert receiver.requests == []
    (d,) = setup.log()
    assert d.state == "pending" and d.last_error and d.last_error.startswith("refused")


async def test_a_slow_endpoint_does_not_hold_up_another(
    services: Services, sender: WebhookSender, clock: Clock
) -> None:
    with Receiver() as slow, Receiver() as fast:
        slow.hang_next = 1
        a = make_setup(services, slow.url)
        b = make_setup(services, fast.url)
        a.emit()
        b.emit()
        # both in one pass: the fast one is not serialized behind the slow one's timeout
        await asyncio.wait_for(sender.run_once(), SENDER_TIMEOUT * 2 + 2)
        assert b.log()[0].state == "delivered"
        assert a.log()[0].state == "pending"


async def test_started_sender_wakes_from_another_thread(
    services: Services, setup: Setup, receiver: Receiver, clock: Clock
) -> None:
    sender = WebhookSender(
        services.db, services.box, allow_http_loopback=True, poll_interval=60, clock=clock
    )
    sender.start()
    try:
        await asyncio.sleep(0.2)  # its first pass found nothing; now it waits 60 s
        setup.emit()
        threading.Thread(target=sender.wake).start()
        await wait_for(lambda: len(receiver.requests) == 1)
        await wait_for(lambda: setup.log()[0].state == "delivered")
    finally:
        await sender.stop()


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_finished_events_are_forgotten_after_the_retention_and_owed_ones_kept(
    setup: Setup, sender: WebhookSender, clock: Clock
) -> None:
    from sqlalchemy import func, select

    from crmail.storage.models import WebhookDelivery, WebhookEvent

    def counts() -> tuple[int, int]:
        return setup.services.db.run(
            lambda s: (
                s.scalar(select(func.count()).select_from(WebhookEvent)),
                s.scalar(select(func.count()).select_from(WebhookDelivery)),
            )
        )

    setup.emit()
    assert await sender.run_once() == 1  # delivered
    owed = setup.emit()  # not attempted yet: still pending
    assert counts() == (2, 2)

    clock.advance(29 * 86400)
    assert await sender.purge_if_due() == 0  # not old enough
    assert counts() == (2, 2)

    clock.advance(2 * 86400)
    assert await sender.purge_if_due() == 1
    assert counts() == (1, 1)
    (left,) = setup.log()
    assert left.event_id == owed and left.state == "pending"
    # at most once per purge interval
    assert await sender.purge_if_due() == 0


async def test_no_retention_keeps_every_event(setup: Setup, clock: Clock) -> None:
    keep = WebhookSender(setup.services.db, setup.services.box, clock=clock, retention=None)
    setup.emit()
    clock.advance(3650 * 86400)
    assert await keep.purge_if_due() == 0
    assert len(setup.log()) == 1
