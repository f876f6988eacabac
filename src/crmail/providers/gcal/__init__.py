"""Google Calendar API v3: the calendar port for accounts connected with Google."""

from crmail.providers.calendar_port import CalendarScopeMissing
from crmail.providers.gcal.client import DEFAULT_BASE_URL, GoogleCalendar

__all__ = ["DEFAULT_BASE_URL", "CalendarScopeMissing", "GoogleCalendar"]
