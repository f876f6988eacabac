"""Manual links of a message (or its whole thread) to a contact, lead or deal."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import Id, IdPath
from crmail.storage import links

router = APIRouter(prefix="/api", tags=["inbox & messages"])

SubjectType = Literal["contact", "lead", "deal"]


class LinkIn(BaseModel):
    subject_type: SubjectType
    subject_id: Id
    whole_thread: bool = False


class LinkResultOut(BaseModel):
    linked: list[int]
    unlinked: list[int]


def _out(r: links.LinkResult) -> LinkResultOut:
    return LinkResultOut(linked=list(r.linked), unlinked=list(r.unlinked))


@router.post("/messages/{message_id}/links", status_code=201)
async def link(
    message_id: IdPath, body: LinkIn, user: CurrentUser, services: ServicesDep
) -> LinkResultOut:
    """Put the message (or every message of its thread you can see) on a record's timeline."""
    r = await services.db.write(
        lambda s: links.link(
            s, user, message_id, body.subject_type, body.subject_id, whole_thread=body.whole_thread
        )
    )
    return _out(r)


@router.delete("/messages/{message_id}/links/{subject_type}/{subject_id}")
async def unlink(
    message_id: IdPath,
    subject_type: SubjectType,
    subject_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    whole_thread: bool = False,
) -> LinkResultOut:
    """Take the message (or its thread, ``?whole_thread=true``) off the record's timeline."""
    r = await services.db.write(
        lambda s: links.unlink(
            s, user, message_id, subject_type, subject_id, whole_thread=whole_thread
        )
    )
    return _out(r)
