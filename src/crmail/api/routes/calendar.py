"""Calendar sync (CalDAV): calendar accounts and their calendars, meetings on timelines,
the user's upcoming meetings, and meetings scheduled from the CRM.

A calendar account is its user's own: another user's id is 404. Meetings on a contact,
lead or deal are the team's, like the mail on its timeline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import Id, IdPath, In, MessageSummaryOut, Out
from crmail.errors import ProviderError
from crmail.providers.caldav.presets import CALDAV_PRESETS
from crmail.services import Services
from crmail.storage import activity, outbound, paging
from crmail.storage import calendar as store
from crmail.storage.crm import UserInfo
from crmail.sync.calendar import CalendarOptions, connect_account, options_for
from crmail.sync.connect import status_for
from crmail.sync.meetings import MeetingRequest, MeetingResult, cancel, reschedule, schedule

router = APIRouter(prefix="/api", tags=["calendar"])

Limit = Annotated[int, Query(ge=1, le=paging.MAX_PAGE)]
Before = Annotated[str | None, Query(max_length=100, description="cursor of the previous page")]
Text = Annotated[str, Field(max_length=5000)]
Email = Annotated[str, Field(max_length=320)]


def calendar_options(services: Services) -> CalendarOptions:
    return options_for(services.settings, services.db, services.box)


def _limits(services: Services) -> outbound.SendLimits:
    s = services.settings
    return outbound.SendLimits(max_recipients=s.max_recipients, sends_per_hour=s.sends_per_hour)


def _wake(request: Request, result: MeetingResult | None = None) -> None:
    services: Services = request.app.state.services
    if result is not None and result.accounts:
        services.sync.actions_queued(result.accounts)
    loop = getattr(request.app.state, "calendar_sync", None)
    if loop is not None:
        loop.wake()


# --- schemas ------------------------------------------------------------------------------


class CalendarAccountIn(In):
    #: the server (discovery) or a calendar's URL; may be left out with a preset
    url: Annotated[str, Field(max_length=2000)] = ""
    username: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]
    preset: Annotated[str | None, Field(max_length=20)] = None
    mail_account_id: Id | None = None
    auto_create: bool = False


class CalendarAccountOut(Out):
    id: int
    #: caldav, or google / microsoft: the calendar of a Gmail / Graph account's sign-in
    provider: str
    url: str
    username: str
    preset: str | None
    mail_account_id: int | None
    auto_create: bool
    state: str
    last_error: str | None
    last_sync_at: datetime | None
    created_at: datetime


class CalendarOut(Out):
    id: int
    account_id: int
    url: str
    name: str
    selected: bool
    synced: int
    skipped: dict[str, int]
    last_sync_at: datetime | None


class CalendarPatch(In):
    selected: bool


class AttendeeOut(Out):
    email: str
    name: str
    partstat: str
    role: str


class MeetingOut(Out):
    id: int
    uid: str
    summary: str
    description: str
    location: str
    organizer_email: str | None
    status: str
    starts_at: datetime
    ends_at: datetime
    all_day: bool
    tzid: str | None
    recurring: bool
    origin: str
    attendees: list[AttendeeOut]


class MeetingItemOut(Out):
    meeting: MeetingOut
    reason: str


class MeetingTimelineOut(Out):
    items: list[MeetingItemOut]
    #: pass as ``before`` for the next page; None on the last page
    next_before: str | None


class ActivityItemOut(Out):
    #: "mail" or "meeting"
    kind: str
    #: the message's date, or the meeting's start
    at: datetime
    reason: str
    message: MessageSummaryOut | None
    meeting: MeetingOut | None


class ActivityOut(Out):
    items: list[ActivityItemOut]
    #: pass as ``before`` for the next page; None on the last page
    next_before: str | None


class UpcomingOut(Out):
    meeting: MeetingOut
    starts_at: datetime
    ends_at: datetime
    status: str


class MeetingIn(In):
    summary: Annotated[str, Field(min_length=1, max_length=500)]
    starts_at: datetime
    ends_at: datetime
    contact_ids: Annotated[list[Id], Field(max_length=100)] = Field(default_factory=list)
    emails: Annotated[list[Email], Field(max_length=100)] = Field(default_factory=list)
    description: Text = ""
    location: Annotated[str, Field(max_length=1000)] = ""
    #: the zone the meeting is written in (DTSTART's TZID), e.g. Europe/Berlin
    tzid: Annotated[str | None, Field(max_length=100)] = None
    calendar_account_id: Id | None = None


class RescheduleIn(In):
    starts_at: datetime
    ends_at: datetime


class MeetingResultOut(Out):
    meeting: MeetingOut
    invitation_message_id: int | None


class PresetOut(Out):
    key: str
    label: str
    url: str
    app_password_hint: str


def _result(r: MeetingResult) -> MeetingResultOut:
    return MeetingResultOut(
        meeting=MeetingOut.model_validate(r.meeting), invitation_message_id=r.message_id
    )


# --- accounts ----------------------------------------------------------------------------------


@router.get("/calendar/presets")
async def list_presets(user: CurrentUser) -> list[PresetOut]:
    """CalDAV servers of common providers (URL to start discovery at)."""
    return [PresetOut.model_validate(p) for p in CALDAV_PRESETS.values()]


@router.post("/calendar/accounts", status_code=201, response_model=CalendarAccountOut)
async def connect(
    body: CalendarAccountIn, request: Request, user: CurrentUser, services: ServicesDep
) -> Response | CalendarAccountOut:
    """Connect a CalDAV calendar (checked by a first sync round before it is kept)."""
    try:
        view = await connect_account(
            services.db,
            services.box,
            calendar_options(services),
            services.settings.mail_policy,
            user,
            url=body.url,
            username=body.username,
            password=body.password,
            preset=body.preset,
            mail_account_id=body.mail_account_id,
            auto_create=body.auto_create,
        )
    except ProviderError as exc:
        # A refused login is the user's input to fix (422), like a mailbox's.
        return JSONResponse(exc.to_dict(), status_code=status_for(exc))
    _wake(request)
    return CalendarAccountOut.model_validate(view)


@router.get("/calendar/accounts")
async def list_accounts(user: CurrentUser, services: ServicesDep) -> list[CalendarAccountOut]:
    rows = await services.db.read(lambda s: store.list_accounts(s, user))
    return [CalendarAccountOut.model_validate(a) for a in rows]


@router.get("/calendar/accounts/{account_id}")
async def get_account(
    account_id: IdPath, user: CurrentUser, services: ServicesDep
) -> CalendarAccountOut:
    a = await services.db.read(lambda s: store.get_account(s, user, account_id))
    return CalendarAccountOut.model_validate(a)


@router.delete("/calendar/accounts/{account_id}", status_code=204)
async def disconnect(account_id: IdPath, user: CurrentUser, services: ServicesDep) -> Response:
    """Disconnect: the meetings already on timelines stay."""
    await services.db.write(lambda s: store.delete_account(s, user, account_id))
    return Response(status_code=204)


@router.get("/calendar/accounts/{account_id}/calendars")
async def list_calendars(
    account_id: IdPath, user: CurrentUser, services: ServicesDep
) -> list[CalendarOut]:
    rows = await services.db.read(lambda s: store.list_calendars(s, user, account_id))
    return [CalendarOut.model_validate(c) for c in rows]


@router.patch("/calendar/accounts/{account_id}/calendars/{calendar_id}")
async def choose_calendar(
    account_id: IdPath,
    calendar_id: IdPath,
    body: CalendarPatch,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
) -> CalendarOut:
    """Select (sync) or deselect a calendar."""
    c = await services.db.write(
        lambda s: store.select_calendar(s, user, account_id, calendar_id, body.selected)
    )
    _wake(request)
    return CalendarOut.model_validate(c)


# --- meetings -------------------------------------------------------------------------------------


@router.get("/meetings/upcoming")
async def upcoming(
    user: CurrentUser, services: ServicesDep, limit: Limit = 50
) -> list[UpcomingOut]:
    """Your meetings from now on, one row per occurrence, soonest first."""
    now = datetime.now(UTC)
    rows = await services.db.read(lambda s: store.upcoming(s, user, now, limit))
    return [UpcomingOut.model_validate(r) for r in rows]


@router.get("/meetings/{meeting_id}")
async def get_meeting(meeting_id: IdPath, user: CurrentUser, services: ServicesDep) -> MeetingOut:
    m = await services.db.read(lambda s: store.get_meeting(s, user, meeting_id))
    return MeetingOut.model_validate(m)


async def _meetings_of(
    services: Services, user: UserInfo, kind: str, ident: int, limit: int, before: str | None
) -> MeetingTimelineOut:
    page = await services.db.read(
        lambda s: store.meeting_timeline(s, user, kind, ident, limit, before)
    )
    return MeetingTimelineOut.model_validate(page)


@router.get("/contacts/{contact_id}/meetings", tags=["contacts"])
async def contact_meetings(
    contact_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> MeetingTimelineOut:
    """Meetings on the contact's timeline, latest first, with why they are there."""
    return await _meetings_of(services, user, "contact", contact_id, limit, before)


@router.get("/leads/{lead_id}/meetings", tags=["leads"])
async def lead_meetings(
    lead_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> MeetingTimelineOut:
    return await _meetings_of(services, user, "lead", lead_id, limit, before)


@router.get("/deals/{deal_id}/meetings", tags=["deals"])
async def deal_meetings(
    deal_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> MeetingTimelineOut:
    return await _meetings_of(services, user, "deal", deal_id, limit, before)


async def _activity_of(
    services: Services, user: UserInfo, kind: str, ident: int, limit: int, before: str | None
) -> ActivityOut:
    page = await services.db.read(lambda s: activity.activity(s, user, kind, ident, limit, before))
    return ActivityOut.model_validate(page)


@router.get("/contacts/{contact_id}/activity", tags=["contacts"])
async def contact_activity(
    contact_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> ActivityOut:
    """The contact's mail and meetings interleaved by date (a meeting at its start),
    newest first, with why each is there."""
    return await _activity_of(services, user, "contact", contact_id, limit, before)


@router.get("/leads/{lead_id}/activity", tags=["leads"])
async def lead_activity(
    lead_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> ActivityOut:
    return await _activity_of(services, user, "lead", lead_id, limit, before)


@router.get("/deals/{deal_id}/activity", tags=["deals"])
async def deal_activity(
    deal_id: IdPath,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    before: Before = None,
) -> ActivityOut:
    return await _activity_of(services, user, "deal", deal_id, limit, before)


@router.post("/meetings", status_code=201)
async def create_meeting(
    body: MeetingIn, request: Request, user: CurrentUser, services: ServicesDep
) -> MeetingResultOut:
    """Schedule a meeting in your calendar and invite the attendees (iMIP mail)."""
    r = await schedule(
        services.db,
        services.box,
        calendar_options(services),
        user,
        MeetingRequest(
            body.summary,
            body.starts_at,
            body.ends_at,
            tuple(body.contact_ids),
            tuple(body.emails),
            body.description,
            body.location,
            body.tzid,
            body.calendar_account_id,
        ),
        limits=_limits(services),
    )
    _wake(request, r)
    return _result(r)


@router.post("/meetings/{meeting_id}/reschedule")
async def reschedule_meeting(
    meeting_id: IdPath,
    body: RescheduleIn,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
) -> MeetingResultOut:
    r = await reschedule(
        services.db,
        services.box,
        calendar_options(services),
        user,
        meeting_id,
        body.starts_at,
        body.ends_at,
        limits=_limits(services),
    )
    _wake(request, r)
    return _result(r)


@router.post("/meetings/{meeting_id}/cancel")
async def cancel_meeting(
    meeting_id: IdPath, request: Request, user: CurrentUser, services: ServicesDep
) -> MeetingResultOut:
    r = await cancel(
        services.db,
        services.box,
        calendar_options(services),
        user,
        meeting_id,
        limits=_limits(services),
    )
    _wake(request, r)
    return _result(r)
