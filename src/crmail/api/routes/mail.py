"""The CRM Inbox and single messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import (
    MAX_ID,
    AddressOut,
    AttachmentOut,
    IdPath,
    InboxEntryOut,
    InboxOut,
    LinkOut,
    MessageOut,
    PlacementOut,
)
from crmail.mime import sanitize_html
from crmail.storage import crm

router = APIRouter(prefix="/api", tags=["inbox & messages"])


@router.get("/inbox")
async def get_inbox(
    user: CurrentUser,
    services: ServicesDep,
    user_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="a teammate's id: read-only view")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=crm.MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(max_length=100)] = None,
    include_read: bool = True,
) -> InboxOut:
    """Your open CRM Inbox items, newest first, or a teammate's (``actionable: false``)."""
    target = user.id if user_id is None else user_id

    page = await services.db.read(
        lambda s: crm.inbox_for(s, user, target, limit, before, include_read)
    )
    return InboxOut(
        user_id=target,
        actionable=target == user.id,
        items=[InboxEntryOut.model_validate(i) for i in page.items],
        next_before=page.next_before,
    )


@router.get("/messages/{message_id}")
async def get_message(message_id: IdPath, user: CurrentUser, services: ServicesDep) -> MessageOut:
    d = await services.db.read(lambda s: crm.message_detail(s, user, message_id))
    m = d.summary
    return MessageOut(
        id=m.id,
        thread_id=m.thread_id,
        message_id=d.message_id_header,
        subject=m.subject,
        date=m.date,
        direction=m.direction,
        participants={
            role: [AddressOut.model_validate(a) for a in addrs]
            for role, addrs in d.participants.items()
        },
        text=d.text,
        # Mail HTML is hostile input: never hand it to a browser unsanitized.
        html=sanitize_html(d.html) if d.html else None,
        attachments=[AttachmentOut.model_validate(a) for a in d.attachments],
        parse_failed=d.parse_failed,
        defects=list(d.defects),
        placements=[PlacementOut.model_validate(p) for p in d.placements],
        links=[LinkOut.model_validate(link) for link in d.links],
        send_state=d.send_state,
        send_error=d.send_error,
        sync_error=d.sync_error,
    )


@router.get(
    "/messages/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}, "description": "the original message"}},
)
async def get_message_raw(message_id: IdPath, user: CurrentUser, services: ServicesDep) -> Response:
    raw = await services.db.read(lambda s: crm.message_raw(s, user, message_id))
    return Response(
        raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
            # The bytes are attacker-controlled: browsers must not sniff them into HTML.
            "X-Content-Type-Options": "nosniff",
        },
    )
