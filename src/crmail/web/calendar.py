"""Calendar pages: Settings → Calendar (connect a CalDAV calendar, choose calendars) and
scheduling a meeting from a contact's page. Same use-cases as the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Response
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput
from crmail.providers.caldav.presets import CALDAV_PRESETS
from crmail.storage import calendar as store
from crmail.storage import outbound
from crmail.sync.calendar import CalendarOptions, connect_account, options_for
from crmail.sync.meetings import MeetingRequest, schedule
from crmail.web.common import Web, WebAction, WebRoute, WebUser, see_other

router = APIRouter(route_class=WebRoute, include_in_schema=False)

Text = Annotated[str, Form(max_length=300)]


def _options(web: Web) -> CalendarOptions:
    return options_for(web.services.settings, web.services.db, web.services.box)


async def _settings_page(web: Web, error: InvalidInput | None = None) -> Response:
    def load(s: Session) -> list[tuple[store.CalendarAccountView, list[store.CalendarView]]]:
        return [
            (a, store.list_calendars(s, web.user, a.id)) for a in store.list_accounts(s, web.user)
        ]

    accounts = await web.services.db.read(load)
    return web.render(
        "settings_calendar.html",
        422 if error else 200,
        accounts=accounts,
        presets=list(CALDAV_PRESETS.values()),
        error=error,
    )


@router.get("/settings/calendar")
async def calendar_settings(web: WebUser) -> Response:
    return await _settings_page(web)


@router.post("/settings/calendar/accounts")
async def connect(
    web: WebAction,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1000)],
    url: Annotated[str, Form(max_length=2000)] = "",
    preset: Text = "",
    auto_create: Annotated[bool, Form()] = False,
) -> Response:
    await connect_account(
        web.services.db,
        web.services.box,
        _options(web),
        web.services.settings.mail_policy,
        web.user,
        url=url,
        username=username,
        password=password,
        preset=preset or None,
        auto_create=auto_create,
    )
    return see_other("/settings/calendar")


@router.post("/settings/calendar/accounts/{account_id}/delete")
async def disconnect(account_id: int, web: WebAction) -> Response:
    await web.services.db.write(lambda s: store.delete_account(s, web.user, account_id))
    return see_other("/settings/calendar")


@router.post("/settings/calendar/accounts/{account_id}/calendars/{calendar_id}")
async def choose(
    account_id: int,
    calendar_id: int,
    web: WebAction,
    selected: Annotated[bool, Form()] = False,
) -> Response:
    await web.services.db.write(
        lambda s: store.select_calendar(s, web.user, account_id, calendar_id, selected)
    )
    return see_other("/settings/calendar")


def _local_time(value: str, tz_name: str) -> datetime:
    try:
        zone = ZoneInfo(tz_name) if tz_name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("choose the meeting's date and time") from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


@router.post("/contacts/{contact_id}/meetings")
async def schedule_from_contact(
    contact_id: int,
    web: WebAction,
    summary: Annotated[str, Form(min_length=1, max_length=500)],
    starts_at: Annotated[str, Form(max_length=40)],
    minutes: Annotated[int, Form(ge=5, le=24 * 60)] = 30,
    location: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=5000)] = "",
    tz: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Schedule a meeting with this contact: into your calendar, invitation by mail."""
    start = _local_time(starts_at, tz)
    s = web.services.settings
    result = await schedule(
        web.services.db,
        web.services.box,
        _options(web),
        web.user,
        MeetingRequest(
            summary,
            start,
            start + timedelta(minutes=minutes),
            contact_ids=(contact_id,),
            description=description,
            location=location,
            tzid=tz if tz and start.tzinfo is not UTC else None,
        ),
        limits=outbound.SendLimits(
            max_recipients=s.max_recipients, sends_per_hour=s.sends_per_hour
        ),
    )
    if result.accounts:
        web.services.sync.actions_queued(result.accounts)
    return see_other(f"/contacts/{contact_id}#meetings")
