"""`crmail demo`: the real service on SQLite against a private local Dovecot with seeded mail.

Everything runs on loopback: a Dovecot instance rendered into the demo's data dir, a
workspace with a user, leads, contacts and a deal, and that user's mailbox connected.
Every minute a contact writes again, so the Inbox can be watched updating live.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.demo.dovecot import Dovecot
from crmail.demo.smtp import SmtpRelay
from crmail.runtime import serve
from crmail.services import Services
from crmail.storage import accounts, crm, web

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from crmail.demo.fakes import FakeProviders

USER = "you@demo.test"
PASSWORD = "demo-password"
#: a teammate without a mailbox: sign in as them to see your Inbox read-only
TEAMMATE = "sam@demo.test"
WEB_PASSWORD = "demo-web-password"

CONTACTS = [
    ("Alice Martin", "alice@acme.example", "ACME Corp"),
    ("Bob Chen", "bob@globex.example", "Globex"),
    ("Carla Diaz", "carla@initech.example", "Initech"),
]
STRANGERS = [
    ("Newsletter", "news@weekly.example"),
    ("Mum", "mum@family.example"),
    ("Shop", "orders@shop.example"),
]


def _mail(
    sender: tuple[str, str],
    to: str,
    subject: str,
    body: str,
    when: datetime,
    reply_to_id: str | None = None,
) -> tuple[str, bytes]:
    m = EmailMessage()
    m["From"] = f"{sender[0]} <{sender[1]}>"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    msgid = make_msgid(domain=sender[1].split("@")[1])
    m["Message-ID"] = msgid
    if reply_to_id:
        m["In-Reply-To"] = reply_to_id
        m["References"] = reply_to_id
    m.set_content(body)
    m.add_alternative(
        f"<p>{body}</p><p><img src='https://tracker.example/p.gif'></p>", subtype="html"
    )
    return msgid, m.as_bytes()


def seed_mailbox(dovecot: Dovecot) -> int:
    now = datetime.now(UTC)
    n = 0
    for i, (name, email, lead) in enumerate(CONTACTS):
        when = now - timedelta(days=3 - i, hours=i)
        msgid, raw = _mail(
            (name, email),
            USER,
            f"{lead}: next steps",
            f"Hi, {name} here. Shall we talk pricing?",
            when,
        )
        dovecot.append(USER, "INBOX", raw, date=when)
        _, reply = _mail(
            ("You", USER),
            email,
            f"Re: {lead}: next steps",
            "Sure, how about Thursday?",
            when + timedelta(hours=2),
            msgid,
        )
        dovecot.append(USER, "Sent", reply, flags=["\\Seen"], date=when + timedelta(hours=2))
        n += 2
    for name, email in STRANGERS:
        _, raw = _mail(
            (name, email),
            USER,
            f"Private note from {name}",
            "Not for the CRM.",
            now - timedelta(hours=5),
        )
        dovecot.append(USER, "INBOX", raw)
        n += 1
    _, raw = _mail(
        CONTACTS[0][:2],
        USER,
        "Signed contract (archived)",
        "Attached, thanks!",
        now - timedelta(days=10),
    )
    dovecot.append(USER, "Archive", raw, flags=["\\Seen"])
    return n + 1


def seed_crm(services: Services) -> tuple[str, int, int]:
    """A workspace, its admin user (token returned once), leads, contacts and a deal."""

    def make(s: Session) -> tuple[str, int, int]:
        ws = crm.create_workspace(s, "Demo Inc.").id
        new = crm.create_user(s, ws, USER, name="Demo User", role="admin")
        mate = crm.create_user(s, ws, TEAMMATE, name="Sam Teammate", role="member")
        for uid in (new.user.id, mate.user.id):
            web.set_password(s, uid, WEB_PASSWORD)
        contacts = []
        for name, email, lead in CONTACTS:
            lead_id = crm.create_lead(s, ws, name=lead).id
            contact = crm.create_contact(s, ws, name=name, emails=[email], lead_id=lead_id)
            contacts.append(contact.id)
        crm.create_deal(s, ws, title="ACME renewal", status="open", contact_ids=[contacts[0]])
        return new.token, ws, new.user.id

    return services.db.run(make)


def _fake_provider_mail() -> list[tuple[datetime, Callable[[str], bytes]]]:
    """What the fake Google and Microsoft mailboxes hold: the contacts' mail and one
    private message."""
    now = datetime.now(UTC).replace(microsecond=0)
    mail: list[tuple[datetime, Callable[[str], bytes]]] = []

    def letter(sender: tuple[str, str], subject: str, body: str, when: datetime) -> None:
        mail.append((when, lambda to: _mail(sender, to, subject, body, when)[1]))

    for i, (name, email, lead) in enumerate(CONTACTS):
        letter(
            (name, email), f"{lead}: checking in", f"Hi, {name} here.", now - timedelta(days=2 - i)
        )
    letter(STRANGERS[1], "Sunday lunch?", "Not for the CRM.", now - timedelta(hours=3))
    return mail


async def run_demo(
    port: int | None = None, data_dir: Path | None = None, *, with_fake_providers: bool = False
) -> None:
    base = Settings.from_env()
    root = data_dir or (base.data_dir / "demo")
    port = port or base.port
    with contextlib.ExitStack() as stack:
        fakes = None
        if with_fake_providers:
            from crmail.demo.fakes import fake_providers

            host = "127.0.0.1" if base.host in ("", "0.0.0.0", "::") else base.host
            fakes = stack.enter_context(
                fake_providers(f"http://{host}:{port}", _fake_provider_mail())
            )
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(mode=0o700, parents=True)  # the demo's database and key: yours alone
        settings = Settings.from_env(
            None,
            data_dir=root,
            database_url=f"sqlite:///{root / 'crmail.db'}",
            secret_keys=(new_key(),),
            port=port,
            poll_interval=5.0,
            # The demo's Dovecot and SMTP relay listen on loopback.
            mail_allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
            **(fakes.settings if fakes else {}),
        )
        await _run(settings, fakes)


async def _run(settings: Settings, fakes: FakeProviders | None) -> None:
    with (
        # Dovecot's own users must reach its files: a private temp dir under /tmp works
        # wherever crmail was started (a home directory is often closed to them).
        Dovecot() as dovecot,
        SmtpRelay(dovecot.host, dovecot.lmtp_port) as relay,
    ):
        box = dovecot.add_user(USER, PASSWORD)
        seeded = seed_mailbox(dovecot)
        services = Services.open(settings)
        token, ws, user_id = seed_crm(services)
        secret = services.box.seal({"password": PASSWORD})
        services.db.run(
            lambda s: accounts.create_account(
                s,
                workspace_id=ws,
                user_id=user_id,
                email=USER,
                provider="imap",
                settings={
                    "imap_host": box.host,
                    "imap_port": box.tls_port,
                    "imap_security": "tls",
                    "ca_file": box.ca_file,
                    "username": USER,
                    # The demo's outgoing server: a local relay into the same Dovecot, so
                    # mail sent from the CRM lands in the contacts' demo mailboxes.
                    "smtp_host": relay.host,
                    "smtp_port": relay.port,
                    "smtp_security": "none",
                    "smtp_auth": False,
                },
                secret=secret,
            )
        )

        def ready(url: str) -> None:
            print(
                f"\ncrmail demo is running on SQLite ({settings.sqlite_path})\n"
                f"  demo mailbox : {USER} / {PASSWORD} on imaps://{box.host}:{box.tls_port} "
                f"(Dovecot, {seeded} seeded messages; 3 are private and stay out of the CRM)\n"
                f"  web app      : {url}/signin  as {USER} / {WEB_PASSWORD}\n"
                f"                 (teammate, no mailbox: {TEAMMATE} / {WEB_PASSWORD})\n"
                f"  API          : {url}/docs  (Authorization: Bearer {token})\n"
                f"  try          : curl -H 'Authorization: Bearer {token}' {url}/api/inbox\n"
                f"                 curl -H 'Authorization: Bearer {token}' {url}/api/accounts\n"
                + (_fakes_banner(fakes) if fakes else "")
                + "  a contact writes again every 60 s (watch /api/inbox); Ctrl-C stops.\n",
                flush=True,
            )

        async def keep_writing() -> None:
            i = 0
            while True:
                await asyncio.sleep(60)
                i += 1
                name, email, lead = CONTACTS[i % len(CONTACTS)]
                _, raw = _mail(
                    (name, email), USER, f"{lead}: follow-up #{i}", "Any news?", datetime.now(UTC)
                )
                await asyncio.to_thread(dovecot.deliver, USER, raw)
                if fakes:
                    _, raw = _mail(
                        (name, email),
                        fakes.google_mailbox[0],
                        f"{lead}: follow-up #{i}",
                        "Any news?",
                        datetime.now(UTC),
                    )
                    await asyncio.to_thread(fakes.deliver_gmail, raw)
                print(f"delivered follow-up #{i} from {email}", flush=True)

        writer = asyncio.create_task(keep_writing())
        try:
            await serve(services, ready=ready)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


def _fakes_banner(fakes: FakeProviders) -> str:
    google, microsoft = fakes.google_mailbox, fakes.microsoft_mailbox
    return (
        "  fake Google and Microsoft (loopback stand-ins, not the real services):\n"
        "                 Settings → Email → Connect with Google / Connect with Microsoft;\n"
        "                 the fake's consent page signs you in, press Allow: the mailbox\n"
        "                 connects and imports through the Gmail API (push) or Microsoft Graph\n"
        f"                 Google    : {google[0]} ({google[1]} messages) at "
        f"{fakes.google_consent}\n"
        f"                 Microsoft : {microsoft[0]} ({microsoft[1]} messages) at "
        f"{fakes.microsoft_consent}\n"
    )
