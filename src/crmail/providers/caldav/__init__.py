"""CalDAV (RFC 4791) through the ``caldav`` library: discovery, calendars, RFC 6578
sync-collection with a ctag/etag fallback, multiget, PUT and DELETE.

Everything here is blocking (the library is); :mod:`crmail.sync.calendar` runs it in a
thread. Errors leave this package as :mod:`crmail.errors` exceptions.
"""

from crmail.providers.caldav.client import (
    CalDavCalendar,
    CalDavClient,
    CalDavSettings,
    Listing,
    RemoteCalendar,
    Resource,
    SyncTokenInvalid,
)
from crmail.providers.caldav.presets import CALDAV_PRESETS, CalDavPreset

__all__ = [
    "CALDAV_PRESETS",
    "CalDavCalendar",
    "CalDavClient",
    "CalDavPreset",
    "CalDavSettings",
    "Listing",
    "RemoteCalendar",
    "Resource",
    "SyncTokenInvalid",
]
