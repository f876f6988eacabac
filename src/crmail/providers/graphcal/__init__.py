"""Microsoft Graph calendars: the calendar port for accounts connected with Microsoft."""

from crmail.providers.graphcal.client import DEFAULT_BASE_URL, GraphCalendar

__all__ = ["DEFAULT_BASE_URL", "GraphCalendar"]
