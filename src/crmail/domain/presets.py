"""Server presets for common providers, and what to tell a user when a login fails."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    key: str
    label: str
    imap_host: str
    imap_port: int
    imap_security: str  # "tls" | "starttls" | "none"
    smtp_host: str
    smtp_port: int
    smtp_security: str
    #: shown when the provider refuses a password because two-factor auth is on
    app_password_hint: str
    #: largest attachment total the provider accepts on send, in bytes
    attachment_limit: int = 25 * 1024 * 1024
    oauth: str | None = None  # "gmail" | "graph" when an API connection exists


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset(
            "gmail",
            "Gmail / Google Workspace",
            "imap.gmail.com",
            993,
            "tls",
            "smtp.gmail.com",
            465,
            "tls",
            "Google refuses your normal password when 2-Step Verification is on: create an "
            "app password at myaccount.google.com → Security → App passwords, or use "
            "Connect with Google (Settings → Email) where your administrator has set it up.",
            oauth="gmail",
        ),
        Preset(
            "microsoft365",
            "Microsoft 365 (work or school)",
            "outlook.office365.com",
            993,
            "tls",
            "smtp.office365.com",
            587,
            "starttls",
            "Microsoft 365 often disables password logins (basic auth): use Connect with "
            "Microsoft (Settings → Email) where your administrator has set it up, or ask your "
            "admin to allow IMAP/SMTP AUTH and create an app password.",
            attachment_limit=3 * 1024 * 1024,
            oauth="graph",
        ),
        Preset(
            "outlook",
            "Outlook.com / Hotmail",
            "outlook.office365.com",
            993,
            "tls",
            "smtp-mail.outlook.com",
            587,
            "starttls",
            "With two-step verification on, create an app password at account.microsoft.com → "
            "Security → Advanced security options.",
            attachment_limit=3 * 1024 * 1024,
            oauth="graph",
        ),
        Preset(
            "zoho",
            "Zoho Mail",
            "imap.zoho.com",
            993,
            "tls",
            "smtp.zoho.com",
            465,
            "tls",
            "With two-factor authentication on, generate an application-specific password in "
            "Zoho Accounts → Security → App Passwords, and make sure IMAP access is enabled.",
        ),
        Preset(
            "yahoo",
            "Yahoo Mail",
            "imap.mail.yahoo.com",
            993,
            "tls",
            "smtp.mail.yahoo.com",
            465,
            "tls",
            "Yahoo requires an app password for mail clients: Account Security → Generate app "
            "password.",
        ),
        Preset(
            "icloud",
            "iCloud Mail",
            "imap.mail.me.com",
            993,
            "tls",
            "smtp.mail.me.com",
            587,
            "starttls",
            "iCloud requires an app-specific password: appleid.apple.com → Sign-In and "
            "Security → App-Specific Passwords.",
            attachment_limit=20 * 1024 * 1024,
        ),
        Preset(
            "fastmail",
            "Fastmail",
            "imap.fastmail.com",
            993,
            "tls",
            "smtp.fastmail.com",
            465,
            "tls",
            "Fastmail needs an app password for IMAP/SMTP: Settings → Privacy & Security → "
            "Manage app passwords.",
            attachment_limit=70 * 1024 * 1024,
        ),
        Preset(
            "other",
            "Other IMAP/SMTP server",
            "",
            993,
            "tls",
            "",
            587,
            "starttls",
            "If your provider uses two-factor authentication, it probably requires an "
            "application-specific password for mail clients: create one in your account's "
            "security settings, or ask your email admin.",
        ),
    )
}


def preset(key: str) -> Preset:
    return PRESETS.get(key, PRESETS["other"])
