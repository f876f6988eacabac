"""Webhook endpoints of the workspace (admins only): CRUD, delivery log, test ping.

A member gets 403 on every route (before any lookup, so ids leak nothing); another
workspace's endpoint id is 404, like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import IdPath, In, Out
from crmail.errors import InvalidInput
from crmail.storage import events
from crmail.storage.crm import UNSET
from crmail.sync.webhooks import check_url

router = APIRouter(prefix="/api", tags=["webhooks"])

Url = Annotated[str, Field(min_length=8, max_length=2000)]
EventList = Annotated[
    list[str],
    Field(max_length=len(events.EVENT_TYPES), description="event types; empty: all of them"),
]


class WebhookIn(In):
    url: Url
    events: EventList = Field(default_factory=list)
    active: bool = True


class WebhookPatch(In):
    url: Url | None = None
    events: EventList | None = None
    active: bool | None = None


class WebhookOut(Out):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    #: shown only in this answer; verify Webhook-Signature with it
    secret: str


class DeliveryOut(Out):
    id: int
    event_id: str
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class TestOut(BaseModel):
    event_id: str


def _wake(request: Request) -> None:
    # The sender polls anyway; this only saves the admin the wait. Absent outside `serve`.
    sender = getattr(request.app.state, "webhooks", None)
    if sender is not None:
        sender.wake()


def _patched(body: BaseModel, name: str) -> Any:
    if name not in body.model_fields_set:
        return UNSET
    value = getattr(body, name)
    if value is None:
        raise InvalidInput(f"{name}: may not be null")
    return value


def _out(e: events.EndpointInfo) -> WebhookOut:
    return WebhookOut(
        id=e.id, url=e.url, events=list(e.events), active=e.active, created_at=e.created_at
    )


@router.post("/webhooks", status_code=201)
async def create_webhook(
    body: WebhookIn, user: CurrentUser, services: ServicesDep
) -> WebhookCreatedOut:
    """Add an endpoint; the answer holds its signing secret, shown this once."""
    events.require_admin(user)
    url = check_url(body.url, allow_http_loopback=services.settings.webhook_allow_http_loopback)
    new = await services.db.write(
        lambda s: events.create_endpoint(
            s, user, services.box, url=url, events=body.events, active=body.active
        )
    )
    return WebhookCreatedOut(**_out(new.endpoint).model_dump(), secret=new.secret)


@router.get("/webhooks")
async def list_webhooks(user: CurrentUser, services: ServicesDep) -> list[WebhookOut]:
    rows = await services.db.read(lambda s: events.list_endpoints(s, user))
    return [_out(e) for e in rows]


@router.get("/webhooks/{webhook_id}")
async def get_webhook(webhook_id: IdPath, user: CurrentUser, services: ServicesDep) -> WebhookOut:
    return _out(await services.db.read(lambda s: events.get_endpoint(s, user, webhook_id)))


@router.patch("/webhooks/{webhook_id}")
async def update_webhook(
    webhook_id: IdPath, body: WebhookPatch, user: CurrentUser, services: ServicesDep
) -> WebhookOut:
    events.require_admin(user)
    url = _patched(body, "url")
    if url is not UNSET:
        url = check_url(url, allow_http_loopback=services.settings.webhook_allow_http_loopback)
    changes = {"url": url, "events": _patched(body, "events"), "active": _patched(body, "active")}
    view = await services.db.write(lambda s: events.update_endpoint(s, user, webhook_id, **changes))
    return _out(view)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: IdPath, user: CurrentUser, services: ServicesDep) -> Response:
    """Remove the endpoint; deliveries not yet made to it are dropped."""
    await services.db.write(lambda s: events.delete_endpoint(s, user, webhook_id))
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LOG)] = 50,
) -> list[DeliveryOut]:
    """The delivery log: each event's state, attempts, last status and error, newest first."""
    events.require_admin(user)
    rows = await services.db.read(
        lambda s: events.delivery_log(s, user.workspace_id, webhook_id, limit)
    )
    return [DeliveryOut.model_validate(d) for d in rows]


@router.post("/webhooks/{webhook_id}/test", status_code=202)
async def test_webhook(
    webhook_id: IdPath, user: CurrentUser, services: ServicesDep, request: Request
) -> TestOut:
    """Queue a signed ``webhook.test`` event to this endpoint only; see the delivery log."""
    event_id = await services.db.write(lambda s: events.emit_test(s, user, webhook_id))
    _wake(request)
    return TestOut(event_id=event_id)
