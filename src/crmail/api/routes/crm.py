"""Contacts, leads, deals and their timelines."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import (
    MAX_ID,
    ContactIn,
    ContactOut,
    ContactPatch,
    DealIn,
    DealOut,
    DealPatch,
    DealStatus,
    IdPath,
    LeadIn,
    LeadOut,
    LeadPatch,
    TimelineOut,
)
from crmail.errors import InvalidInput
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.crm import UNSET, UserInfo

router = APIRouter(prefix="/api")

Limit = Annotated[int, Query(ge=1, le=crm.MAX_PAGE)]
Offset = Annotated[
    int, Query(ge=0, le=MAX_ID, description="rows to skip; prefer `after`, which costs nothing")
]
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="the last id of the previous page: the next page starts after it",
    ),
]
Before = Annotated[
    str | None, Query(max_length=100, description="next_before of the previous page")
]


def _patched(body: BaseModel, name: str, *, nullable: bool = False) -> Any:
    """UNSET when the client left the field out; null only where null means "clear"."""
    if name not in body.model_fields_set:
        return UNSET
    value = getattr(body, name)
    if value is None and not nullable:
        raise InvalidInput(f"{name}: may not be null")
    return value


async def _timeline(
    services: Services, user: UserInfo, kind: str, ident: int, limit: int, before: str | None
) -> TimelineOut:
    page = await services.db.read(lambda s: crm.timeline(s, user, kind, ident, limit, before))
    return TimelineOut.model_validate(page)


# --- contacts ---------------------------------------------------------------------------


@router.post("/contacts", status_code=201, tags=["contacts"])
async def create_contact(body: ContactIn, user: CurrentUser, services: ServicesDep) -> ContactOut:
    info = await services.db.write(
        lambda s: crm.create_contact(
            s, user.workspace_id, name=body.name, emails=body.emails, lead_id=body.lead_id
        )
    )
    return ContactOut.model_validate(info)


@router.get("/contacts", tags=["contacts"])
async def list_contacts(
    user: CurrentUser,
    services: ServicesDep,
    lead_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    after: After = None,
) -> list[ContactOut]:
    rows = await services.db.read(
        lambda s: crm.list_contacts(
            s,
            user.workspace_id,
            lead_id=lead_id,
            email=email,
            limit=limit,
            offset=offset,
            after=after,
        )
    )
    return [ContactOut.model_validate(c) for c in rows]


@router.get("/contacts/{contact_id}", tags=["contacts"])
async def get_contact(contact_id: IdPath, user: CurrentUser, services: ServicesDep) -> ContactOut:
    info = await services.db.read(lambda s: crm.get_contact(s, user.workspace_id, contact_id))
    return ContactOut.model_validate(info)


@router.patch("/contacts/{contact_id}", tags=["contacts"])
async def update_contact(
    contact_id: IdPath, body: ContactPatch, user: CurrentUser, services: ServicesDep
) -> ContactOut:
    name, emails = _patched(body, "name"), _patched(body, "emails")
    lead_id = _patched(body, "lead_id", nullable=True)
    info = await services.db.write(
        lambda s: crm.update_contact(
            s, user.workspace_id, contact_id, name=name, emails=emails, lead_id=lead_id
        )
    )
    return ContactOut.model_validate(info)


@router.get("/contacts/{contact_id}/timeline", tags=["contacts"])
async def contact_timeline(
    contact_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> TimelineOut:
    return await _timeline(services, user, "contact", contact_id, limit, before)


# --- leads -------------------------------------------------------------------------------


@router.post("/leads", status_code=201, tags=["leads"])
async def create_lead(body: LeadIn, user: CurrentUser, services: ServicesDep) -> LeadOut:
    info = await services.db.write(lambda s: crm.create_lead(s, user.workspace_id, name=body.name))
    return LeadOut.model_validate(info)


@router.get("/leads", tags=["leads"])
async def list_leads(
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 100,
    offset: Offset = 0,
    after: After = None,
) -> list[LeadOut]:
    rows = await services.db.read(
        lambda s: crm.list_leads(s, user.workspace_id, limit=limit, offset=offset, after=after)
    )
    return [LeadOut.model_validate(r) for r in rows]


@router.get("/leads/{lead_id}", tags=["leads"])
async def get_lead(lead_id: IdPath, user: CurrentUser, services: ServicesDep) -> LeadOut:
    info = await services.db.read(lambda s: crm.get_lead(s, user.workspace_id, lead_id))
    return LeadOut.model_validate(info)


@router.patch("/leads/{lead_id}", tags=["leads"])
async def update_lead(
    lead_id: IdPath, body: LeadPatch, user: CurrentUser, services: ServicesDep
) -> LeadOut:
    name = _patched(body, "name")
    info = await services.db.write(
        lambda s: crm.update_lead(s, user.workspace_id, lead_id, name=name)
    )
    return LeadOut.model_validate(info)


@router.get("/leads/{lead_id}/timeline", tags=["leads"])
async def lead_timeline(
    lead_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> TimelineOut:
    return await _timeline(services, user, "lead", lead_id, limit, before)


# --- deals -------------------------------------------------------------------------------


@router.post("/deals", status_code=201, tags=["deals"])
async def create_deal(body: DealIn, user: CurrentUser, services: ServicesDep) -> DealOut:
    info = await services.db.write(
        lambda s: crm.create_deal(
            s,
            user.workspace_id,
            title=body.title,
            status=body.status,
            lead_id=body.lead_id,
            contact_ids=body.contact_ids,
            value_cents=body.value_cents,
        )
    )
    return DealOut.model_validate(info)


@router.get("/deals", tags=["deals"])
async def list_deals(
    user: CurrentUser,
    services: ServicesDep,
    status: DealStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    after: After = None,
) -> list[DealOut]:
    rows = await services.db.read(
        lambda s: crm.list_deals(
            s, user.workspace_id, status=status, limit=limit, offset=offset, after=after
        )
    )
    return [DealOut.model_validate(d) for d in rows]


@router.get("/deals/{deal_id}", tags=["deals"])
async def get_deal(deal_id: IdPath, user: CurrentUser, services: ServicesDep) -> DealOut:
    info = await services.db.read(lambda s: crm.get_deal(s, user.workspace_id, deal_id))
    return DealOut.model_validate(info)


@router.patch("/deals/{deal_id}", tags=["deals"])
async def update_deal(
    deal_id: IdPath, body: DealPatch, user: CurrentUser, services: ServicesDep
) -> DealOut:
    changes = {
        "title": _patched(body, "title"),
        "status": _patched(body, "status"),
        "lead_id": _patched(body, "lead_id", nullable=True),
        "contact_ids": _patched(body, "contact_ids"),
        "value_cents": _patched(body, "value_cents", nullable=True),
    }
    info = await services.db.write(
        lambda s: crm.update_deal(s, user.workspace_id, deal_id, **changes)
    )
    return DealOut.model_validate(info)


@router.get("/deals/{deal_id}/timeline", tags=["deals"])
async def deal_timeline(
    deal_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> TimelineOut:
    return await _timeline(services, user, "deal", deal_id, limit, before)
