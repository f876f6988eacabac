"""Send and reply from the CRM through the user's own mailbox (or the default provider)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import IdPath
from crmail.errors import InvalidInput
from crmail.services import Services
from crmail.storage import outbound

router = APIRouter(prefix="/api", tags=["sending"])

Kind = Literal["individual", "bulk", "workflow"]


class AttachmentIn(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=200)
    data_base64: str


class ComposeIn(BaseModel):
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str = Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list)
    from_address: str | None = Field(
        default=None,
        description="bulk email: a From other than your mailbox goes through the default provider",
    )


class SendIn(ComposeIn):
    kind: Kind = "individual"


class SenderOut(BaseModel):
    via: str
    account_id: int | None
    from_address: str
    max_attachments_bytes: int
    allowed_extensions: list[str] | None
    limit_source: str


class QueuedOut(BaseModel):
    message_id: int
    state: str = "queued"


def _draft(body: ComposeIn) -> outbound.OutgoingDraft:
    files = []
    for a in body.attachments:
        try:
            data = base64.b64decode(a.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"attachment {a.filename!r} is not valid base64") from exc
        files.append(outbound.NewAttachment(a.filename, a.content_type, data))
    return outbound.OutgoingDraft(
        to=tuple(body.to),
        cc=tuple(body.cc),
        bcc=tuple(body.bcc),
        subject=body.subject,
        text=body.text,
        html=body.html,
        attachments=tuple(files),
        from_address=body.from_address,
    )


def default_from(services: Services) -> str | None:
    s = services.settings
    return s.default_from or None if s.default_smtp_url else None


def send_limits(services: Services) -> outbound.SendLimits:
    s = services.settings
    return outbound.SendLimits(max_recipients=s.max_recipients, sends_per_hour=s.sends_per_hour)


@router.get("/sender")
async def sender(
    user: CurrentUser,
    services: ServicesDep,
    kind: Kind = "individual",
    from_address: Annotated[str | None, Query(alias="from")] = None,
) -> SenderOut:
    """Which mailbox would send this kind of email, from which address, with which limits."""
    d = default_from(services)
    c = await services.db.read(
        lambda s: outbound.sender_for(s, user, kind, from_address, default_from=d)
    )
    return SenderOut(
        via=c.via,
        account_id=c.account_id,
        from_address=c.from_address,
        max_attachments_bytes=c.policy.max_total_bytes,
        allowed_extensions=sorted(c.policy.allowed_extensions)
        if c.policy.allowed_extensions
        else None,
        limit_source=c.policy.source,
    )


@router.post("/messages", status_code=202)
async def send(body: SendIn, user: CurrentUser, services: ServicesDep) -> QueuedOut:
    """Compose and send. Limits are checked now; delivery happens within seconds.

    The returned message is readable by its sender at once (``GET /api/messages/{id}``),
    with its send state and error, before and after its Sent copy syncs.
    """
    draft, kind, d, limits = _draft(body), body.kind, default_from(services), send_limits(services)
    q = await services.act(
        lambda s: outbound.queue_send(s, user, draft, kind=kind, default_from=d, limits=limits)
    )
    assert isinstance(q, outbound.SendQueued)
    return QueuedOut(message_id=q.message_id)


@router.post("/messages/{message_id}/reply", status_code=202)
async def reply(
    message_id: IdPath, body: ComposeIn, user: CurrentUser, services: ServicesDep
) -> QueuedOut:
    """Reply in the thread: In-Reply-To/References set, "Re:" subject, the original marked answered."""
    draft, d, limits = _draft(body), default_from(services), send_limits(services)
    q = await services.act(
        lambda s: outbound.queue_send(
            s, user, draft, reply_to=message_id, default_from=d, limits=limits
        )
    )
    assert isinstance(q, outbound.SendQueued)
    return QueuedOut(message_id=q.message_id)


@router.post("/messages/{message_id}/retry-send", status_code=202)
async def retry(message_id: IdPath, user: CurrentUser, services: ServicesDep) -> QueuedOut:
    """Send again a message whose sending failed or was interrupted."""
    await services.act(lambda s: outbound.retry_send(s, user, message_id))
    return QueuedOut(message_id=message_id)
