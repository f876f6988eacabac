"""When a snooze preset ends, in the user's own time zone (given by the page's script)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmail.errors import InvalidInput

PRESETS = {
    "later_today": "Later today",
    "tomorrow": "Tomorrow morning",
    "next_week": "Next week",
}
MORNING = time(8, 0)


def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def snooze_until(preset: str, custom: str, tz_name: str, now: datetime) -> datetime:
    """The aware UTC time a snoozed thread comes back. Without a known zone: UTC."""
    tz = zone(tz_name) or UTC
    local = now.astimezone(tz)
    if preset == "later_today":
        return now + timedelta(hours=3)
    if preset == "tomorrow":
        day = local.date() + timedelta(days=1)
        return datetime.combine(day, MORNING, tz).astimezone(UTC)
    if preset == "next_week":
        day = local.date() + timedelta(days=7 - local.weekday())  # next Monday
        return datetime.combine(day, MORNING, tz).astimezone(UTC)
    if preset == "custom":
        try:
            when = datetime.fromisoformat(custom)
        except ValueError:
            raise InvalidInput("choose a date and time to snooze until") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        return when.astimezone(UTC)
    raise InvalidInput("unknown snooze choice")
