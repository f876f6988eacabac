"""Contacts, leads and deals: lists, pages with their email timeline, create/edit forms."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Form, Response
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput
from crmail.storage import activity, crm
from crmail.web.common import Web, WebAction, WebRoute, WebUser, see_other

router = APIRouter(route_class=WebRoute, include_in_schema=False)

Text = Annotated[str, Form(max_length=300)]


def _lead_choice(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInput("choose a lead from the list")
    return int(value)


def _emails(value: str) -> list[str]:
    return [e.strip() for e in value.replace(",", "\n").splitlines() if e.strip()]


def _cents(value: str) -> int | None:
    value = value.strip().replace(",", "")
    if not value:
        return None
    try:
        cents = Decimal(value) * 100
    except InvalidOperation:
        raise InvalidInput("the value must be a number, like 1200 or 99.50") from None
    if cents < 0 or cents != cents.to_integral_value():
        raise InvalidInput("the value must be a positive amount with at most 2 decimals")
    return int(cents)


async def _subject_page(web: Web, kind: str, ident: int, template: str) -> Response:
    ws = web.user.workspace_id

    def load(s: Session) -> dict[str, object]:
        ctx: dict[str, object] = {
            "activity": activity.activity(s, web.user, kind, ident, limit=100).items
        }
        leads = crm.list_leads(s, ws, limit=200)
        ctx["leads"] = leads
        ctx["lead_names"] = {lead.id: lead.name for lead in leads}
        if kind == "contact":
            ctx["contact"] = crm.get_contact(s, ws, ident)
        elif kind == "lead":
            ctx["lead"] = crm.get_lead(s, ws, ident)
            ctx["members"] = crm.list_contacts(s, ws, lead_id=ident, limit=200)
        else:
            ctx["deal"] = crm.get_deal(s, ws, ident)
            ctx["contacts"] = crm.list_contacts(s, ws, limit=200)
        return ctx

    return web.render(template, **(await web.services.db.read(load)))


# --- contacts -----------------------------------------------------------------------------


@router.get("/contacts")
async def contacts(web: WebUser) -> Response:
    ws = web.user.workspace_id

    def load(s: Session) -> tuple[list[crm.ContactInfo], dict[int, str]]:
        leads = {lead.id: lead.name for lead in crm.list_leads(s, ws, limit=200)}
        return crm.list_contacts(s, ws, limit=200), leads

    rows, leads = await web.services.db.read(load)
    return web.render("contacts.html", contacts=rows, lead_names=leads)


@router.get("/contacts/new")
async def new_contact(web: WebUser) -> Response:
    ws = web.user.workspace_id
    leads = await web.services.db.read(lambda s: crm.list_leads(s, ws, limit=200))
    return web.render("contact_new.html", leads=leads)


@router.post("/contacts")
async def create_contact(
    web: WebAction,
    name: Text = "",
    emails: Annotated[str, Form(max_length=20000)] = "",
    lead_id: Text = "",
) -> Response:
    ws = web.user.workspace_id
    lead, addrs = _lead_choice(lead_id), _emails(emails)
    c = await web.services.db.write(
        lambda s: crm.create_contact(s, ws, name=name, emails=addrs, lead_id=lead)
    )
    return see_other(f"/contacts/{c.id}")


@router.get("/contacts/{contact_id}")
async def contact(contact_id: int, web: WebUser) -> Response:
    return await _subject_page(web, "contact", contact_id, "contact.html")


@router.post("/contacts/{contact_id}")
async def update_contact(
    contact_id: int,
    web: WebAction,
    name: Text = "",
    emails: Annotated[str, Form(max_length=20000)] = "",
    lead_id: Text = "",
) -> Response:
    ws = web.user.workspace_id
    lead, addrs = _lead_choice(lead_id), _emails(emails)
    await web.services.db.write(
        lambda s: crm.update_contact(s, ws, contact_id, name=name, emails=addrs, lead_id=lead)
    )
    return see_other(f"/contacts/{contact_id}")


# --- leads --------------------------------------------------------------------------------


@router.get("/leads")
async def leads(web: WebUser) -> Response:
    ws = web.user.workspace_id
    rows = await web.services.db.read(lambda s: crm.list_leads(s, ws, limit=200))
    return web.render("leads.html", leads=rows)


@router.get("/leads/new")
async def new_lead(web: WebUser) -> Response:
    return web.render("lead_new.html")


@router.post("/leads")
async def create_lead(
    web: WebAction, name: Annotated[str, Form(min_length=1, max_length=300)]
) -> Response:
    ws = web.user.workspace_id
    lead = await web.services.db.write(lambda s: crm.create_lead(s, ws, name=name))
    return see_other(f"/leads/{lead.id}")


@router.get("/leads/{lead_id}")
async def lead(lead_id: int, web: WebUser) -> Response:
    return await _subject_page(web, "lead", lead_id, "lead.html")


@router.post("/leads/{lead_id}")
async def update_lead(
    lead_id: int, web: WebAction, name: Annotated[str, Form(min_length=1, max_length=300)]
) -> Response:
    ws = web.user.workspace_id
    await web.services.db.write(lambda s: crm.update_lead(s, ws, lead_id, name=name))
    return see_other(f"/leads/{lead_id}")


# --- deals --------------------------------------------------------------------------------


@router.get("/deals")
async def deals(web: WebUser) -> Response:
    ws = web.user.workspace_id
    rows = await web.services.db.read(lambda s: crm.list_deals(s, ws, limit=200))
    return web.render("deals.html", deals=rows)


@router.get("/deals/new")
async def new_deal(web: WebUser) -> Response:
    ws = web.user.workspace_id

    def load(s: Session) -> tuple[list[crm.LeadInfo], list[crm.ContactInfo]]:
        return crm.list_leads(s, ws, limit=200), crm.list_contacts(s, ws, limit=200)

    leads, contacts = await web.services.db.read(load)
    return web.render("deal_new.html", leads=leads, contacts=contacts, statuses=crm.DEAL_STATUSES)


@router.post("/deals")
async def create_deal(
    web: WebAction,
    title: Annotated[str, Form(min_length=1, max_length=300)],
    status: Text = "open",
    lead_id: Text = "",
    value: Text = "",
    contact_ids: Annotated[list[int] | None, Form()] = None,
) -> Response:
    ws = web.user.workspace_id
    lead, cents, ids = _lead_choice(lead_id), _cents(value), contact_ids or []
    d = await web.services.db.write(
        lambda s: crm.create_deal(
            s, ws, title=title, status=status, lead_id=lead, contact_ids=ids, value_cents=cents
        )
    )
    return see_other(f"/deals/{d.id}")


@router.get("/deals/{deal_id}")
async def deal(deal_id: int, web: WebUser) -> Response:
    return await _subject_page(web, "deal", deal_id, "deal.html")


@router.post("/deals/{deal_id}")
async def update_deal(
    deal_id: int,
    web: WebAction,
    title: Annotated[str, Form(min_length=1, max_length=300)],
    status: Text = "open",
    lead_id: Text = "",
    value: Text = "",
    contact_ids: Annotated[list[int] | None, Form()] = None,
) -> Response:
    ws = web.user.workspace_id
    lead, cents, ids = _lead_choice(lead_id), _cents(value), contact_ids or []
    await web.services.db.write(
        lambda s: crm.update_deal(
            s,
            ws,
            deal_id,
            title=title,
            status=status,
            lead_id=lead,
            contact_ids=ids,
            value_cents=cents,
        )
    )
    return see_other(f"/deals/{deal_id}")
