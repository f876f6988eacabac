"""The webhook routes: admins only, workspace-scoped, secret shown once, delivery log."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from crmail.services import Services
from crmail.storage import events
from crmail.sync.webhooks import WebhookSender, verify_signature
from tests.api.conftest import World
from tests.webhooks.conftest import Clock
from tests.webhooks.receiver import Receiver

URL = "https://hooks.example.com/crm"


def allow_loopback(world: World) -> None:
    s = world.services
    s.settings = dataclasses.replace(s.settings, webhook_allow_http_loopback=True)


def deliver_due(services: Services, clock: Clock) -> int:
    """One sender pass, as the running service would make it."""

    async def once() -> int:
        sender = WebhookSender(services.db, services.box, allow_http_loopback=True, clock=clock)
        try:
            return await sender.run_once()
        finally:
            await sender.stop()

    return asyncio.run(once())


def test_crud_for_admins(world: World) -> None:
    c, h = world.client, world.admin.headers
    r = c.post("/api/webhooks", json={"url": URL, "events": ["message.sent"]}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["message.sent"] and created["active"] is True
    wid = created["id"]

    listed = c.get("/api/webhooks", headers=h).json()
    assert [w["id"] for w in listed] == [wid]
    assert "secret" not in listed[0]  # shown once, at creation
    assert "secret" not in c.get(f"/api/webhooks/{wid}", headers=h).json()

    r = c.patch(f"/api/webhooks/{wid}", json={"active": False, "events": []}, headers=h)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["events"] == []
    assert r.json()["url"] == URL

    assert c.delete(f"/api/webhooks/{wid}", headers=h).status_code == 204
    assert c.get(f"/api/webhooks/{wid}", headers=h).status_code == 404


def test_members_are_forbidden_and_other_workspaces_see_nothing(world: World) -> None:
    c = world.client
    wid = c.post("/api/webhooks", json={"url": URL}, headers=world.admin.headers).json()["id"]
    m = world.owner.headers
    assert c.post("/api/webhooks", json={"url": URL}, headers=m).status_code == 403
    assert c.get("/api/webhooks", headers=m).status_code == 403
    for method, path in [
        ("GET", f"/api/webhooks/{wid}"),
        ("PATCH", f"/api/webhooks/{wid}"),
        ("DELETE", f"/api/webhooks/{wid}"),
        ("GET", f"/api/webhooks/{wid}/deliveries"),
        ("POST", f"/api/webhooks/{wid}/test"),
    ]:
        body = {"active": False} if method == "PATCH" else None
        r = c.request(method, path, json=body, headers=m)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
        r = c.request(method, path, json=body, headers=world.other.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    assert c.get("/api/webhooks", headers=world.other.headers).json() == []
    # and the endpoint is untouched
    assert c.get(f"/api/webhooks/{wid}", headers=world.admin.headers).json()["active"] is True


def test_unsafe_urls_and_unknown_events_are_422(world: World) -> None:
    c, h = world.client, world.admin.headers
    for url in ("http://hooks.example.com/", "http://127.0.0.1:9/", "https://10.0.0.1/"):
        r = c.post("/api/webhooks", json={"url": url}, headers=h)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", url
    r = c.post("/api/webhooks", json={"url": URL, "events": ["message.eaten"]}, headers=h)
    assert r.status_code == 422
    wid = c.post("/api/webhooks", json={"url": URL}, headers=h).json()["id"]
    r = c.patch(f"/api/webhooks/{wid}", json={"url": "https://192.168.1.1/"}, headers=h)
    assert r.status_code == 422
    r = c.patch(f"/api/webhooks/{wid}", json={"url": None}, headers=h)
    assert r.status_code == 422
    # loopback http only with the setting on
    allow_loopback(world)
    assert (
        c.post("/api/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=h).status_code == 201
    )


def test_delivery_log_through_retries(world: World, receiver: Receiver, clock: Clock) -> None:
    allow_loopback(world)
    c, h = world.client, world.admin.headers
    created = c.post("/api/webhooks", json={"url": receiver.url}, headers=h).json()
    wid = created["id"]
    ws = world.admin.workspace_id
    receiver.fail_next = 1
    public = world.services.db.run(
        lambda s: events.emit(s, ws, "inbox.updated", {"user_id": world.owner.id})
    )

    assert deliver_due(world.services, clock) == 1
    (d,) = c.get(f"/api/webhooks/{wid}/deliveries", headers=h).json()
    assert d["event_id"] == public and d["event_type"] == "inbox.updated"
    assert (d["state"], d["attempts"], d["last_status"]) == ("pending", 1, 500)
    assert "boom" in d["last_error"] and d["next_attempt_at"] is not None

    clock.advance(10)
    assert deliver_due(world.services, clock) == 1
    (d,) = c.get(f"/api/webhooks/{wid}/deliveries", headers=h).json()
    assert (d["state"], d["attempts"], d["last_status"], d["last_error"]) == (
        "delivered",
        2,
        200,
        None,
    )
    assert d["delivered_at"] is not None and d["next_attempt_at"] is None
    last = receiver.requests[-1]
    assert verify_signature(created["secret"], last.headers, last.body)


def test_test_ping_goes_to_that_endpoint_only(
    world: World, receiver: Receiver, clock: Clock
) -> None:
    allow_loopback(world)
    c, h = world.client, world.admin.headers
    with Receiver() as bystander:
        target = c.post("/api/webhooks", json={"url": receiver.url}, headers=h).json()
        c.post("/api/webhooks", json={"url": bystander.url}, headers=h)
        r = c.post(f"/api/webhooks/{target['id']}/test", headers=h)
        assert r.status_code == 202
        event_id = r.json()["event_id"]

        assert deliver_due(world.services, clock) == 1
        assert bystander.requests == []
    (req,) = receiver.requests
    body = json.loads(req.body)
    assert body["id"] == event_id and body["type"] == "webhook.test"
    assert verify_signature(target["secret"], req.headers, req.body)
    log = c.get(f"/api/webhooks/{target['id']}/deliveries?limit=5", headers=h).json()
    assert [(d["event_type"], d["state"]) for d in log] == [("webhook.test", "delivered")]
