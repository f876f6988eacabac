"""CalDAV servers of common providers, in the style of :mod:`crmail.domain.presets`.

``url`` is where discovery starts: the server's context path (RFC 6764
``/.well-known/caldav`` is tried by the library when only a host is given).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CalDavPreset:
    key: str
    label: str
    #: where discovery starts; "{username}" is replaced by the login
    url: str
    #: shown when the server refuses the password
    app_password_hint: str
    #: the mail preset (crmail.domain.presets) whose accounts have this calendar
    mail_preset: str | None = None


CALDAV_PRESETS: dict[str, CalDavPreset] = {
    p.key: p
    for p in (
        CalDavPreset(
            "icloud",
            "iCloud",
            "https://caldav.icloud.com/",
            "iCloud needs an app-specific password: appleid.apple.com → Sign-In and "
            "Security → App-Specific Passwords.",
            mail_preset="icloud",
        ),
        CalDavPreset(
            "fastmail",
            "Fastmail",
            "https://caldav.fastmail.com/dav/calendars/user/{username}/",
            "Fastmail needs an app password with CalDAV access: Settings → Privacy & "
            "Security → Connected apps & API tokens.",
            mail_preset="fastmail",
        ),
        CalDavPreset(
            "nextcloud",
            "Nextcloud",
            "https://YOUR-NEXTCLOUD/remote.php/dav/",
            "With two-factor login on, create an app password in Nextcloud: Settings → "
            "Security → Devices & sessions.",
        ),
        CalDavPreset(
            "radicale",
            "Radicale",
            "https://YOUR-RADICALE/",
            "Use the login of your Radicale server's htpasswd file.",
        ),
        CalDavPreset(
            "zoho",
            "Zoho Calendar",
            "https://calendar.zoho.com/caldav/",
            "With two-factor authentication on, Zoho needs an application-specific "
            "password: accounts.zoho.com → Security → App Passwords.",
            mail_preset="zoho",
        ),
    )
}


def preset_url(key: str, username: str) -> str | None:
    preset = CALDAV_PRESETS.get(key)
    if preset is None or "YOUR-" in preset.url:
        return None
    return preset.url.replace("{username}", username)
