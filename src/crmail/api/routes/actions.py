"""What a user does with mail from the CRM: Done, Snooze, read/unread, delete, move.

Each call changes the CRM at once and queues the matching change for the user's own
mailbox (answered 202: the server catches up within a second while the account is
connected). Only the user's own copies are touched; a teammate's mail is refused.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import IdPath
from crmail.storage import actions

router = APIRouter(prefix="/api", tags=["inbox actions"])


class ActionOut(BaseModel):
    #: CRM Inbox items changed
    items: int
    #: accounts whose mailbox will be updated
    queued_for_accounts: list[int]


class SnoozeIn(BaseModel):
    until: datetime = Field(
        description="when the thread comes back to the Inbox (ISO 8601, with zone)"
    )


class ReadIn(BaseModel):
    read: bool = True


class MoveIn(BaseModel):
    folder: str = Field(min_length=1, max_length=500)


def _out(q: actions.Queued) -> ActionOut:
    return ActionOut(items=q.items, queued_for_accounts=sorted(q.account_ids))


@router.post("/threads/{thread_id}/done", status_code=202)
async def done(thread_id: IdPath, user: CurrentUser, services: ServicesDep) -> ActionOut:
    """Mark your copy handled: read and archived in your mailbox, out of your CRM Inbox."""
    return _out(await services.act(lambda s: actions.done(s, user, thread_id)))


@router.post("/threads/{thread_id}/snooze", status_code=202)
async def snooze(
    thread_id: IdPath, body: SnoozeIn, user: CurrentUser, services: ServicesDep
) -> ActionOut:
    """Out of your CRM Inbox until the given time; the mailbox is not changed."""
    until = body.until
    return _out(await services.act(lambda s: actions.snooze(s, user, thread_id, until)))


@router.post("/threads/{thread_id}/read", status_code=202)
async def set_read(
    thread_id: IdPath, body: ReadIn, user: CurrentUser, services: ServicesDep
) -> ActionOut:
    """Mark read (or unread with ``{"read": false}``), in the CRM and in your mailbox."""
    read = body.read
    return _out(await services.act(lambda s: actions.set_read(s, user, thread_id, read)))


@router.delete("/messages/{message_id}", status_code=202)
async def delete(message_id: IdPath, user: CurrentUser, services: ServicesDep) -> ActionOut:
    """Move your copy to Trash (deleted for good if already in Trash or Junk).

    The CRM keeps the message on its timelines."""
    return _out(await services.act(lambda s: actions.delete_message(s, user, message_id)))


@router.post("/messages/{message_id}/move", status_code=202)
async def move(
    message_id: IdPath, body: MoveIn, user: CurrentUser, services: ServicesDep
) -> ActionOut:
    """Move your copy to another folder of your mailbox."""
    folder = body.folder
    return _out(await services.act(lambda s: actions.move_message(s, user, message_id, folder)))
