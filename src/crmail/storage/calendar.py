"""Calendar sync storage, the one name callers import: calendar accounts, calendars,
events and meeting timelines.

Functions take a ``Session`` first and return frozen dataclasses, like ``storage.crm``.
The work is done in ``calendar_accounts`` (accounts and calendars), ``calendar_events``
(the event store), ``calendar_round`` (a sync round's set-based writes),
``calendar_meetings`` (the read side) and ``calendar_own_copy`` (meetings scheduled from
the CRM); their value objects are in ``calendar_views``.
"""

from __future__ import annotations

from crmail.storage.calendar_accounts import (
    GRANT_CALENDARS,
    add_account,
    delete_account,
    ensure_grant_calendars,
    forget_token,
    get_account,
    job_for,
    list_accounts,
    list_calendars,
    record_account_result,
    select_calendar,
    selected_calendars,
    sync_jobs,
    upsert_calendars,
)
from crmail.storage.calendar_events import set_partstat, store_event
from crmail.storage.calendar_meetings import (
    get_meeting,
    meeting_timeline,
    meetings_by_id,
    upcoming,
)
from crmail.storage.calendar_own_copy import OwnCopy, default_calendar, own_copy, record_own_copy
from crmail.storage.calendar_round import apply_round
from crmail.storage.calendar_views import (
    MEETING_EVENTS,
    AttendeeView,
    CalendarAccountView,
    CalendarState,
    CalendarView,
    Fetched,
    MeetingItem,
    MeetingView,
    RoundResult,
    SyncJob,
    UpcomingItem,
)

__all__ = [
    "GRANT_CALENDARS",
    "MEETING_EVENTS",
    "AttendeeView",
    "CalendarAccountView",
    "CalendarState",
    "CalendarView",
    "Fetched",
    "MeetingItem",
    "MeetingView",
    "OwnCopy",
    "RoundResult",
    "SyncJob",
    "UpcomingItem",
    "add_account",
    "apply_round",
    "default_calendar",
    "delete_account",
    "ensure_grant_calendars",
    "forget_token",
    "get_account",
    "get_meeting",
    "job_for",
    "list_accounts",
    "list_calendars",
    "meeting_timeline",
    "meetings_by_id",
    "own_copy",
    "record_account_result",
    "record_own_copy",
    "select_calendar",
    "selected_calendars",
    "set_partstat",
    "store_event",
    "sync_jobs",
    "upcoming",
    "upsert_calendars",
]
