"""The BCC drop address (Freshsales' 1-way mode, seed 004): crmail's own SMTP listener."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.api import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import accounts, crm, drop
from crmail.storage.models import MailAccount, Message, MessageRaw, TimelineEntry
from crmail.sync.dropbox import DropServer
from tests.factories import World, message, new_world
from tests.servers import MailboxAccount
from tests.sync.test_inbound import count
from tests.sync.test_scopes import links_of

DOMAIN = "drop.example.test"


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


@pytest.fixture
async def drops(services: Services) -> AsyncIterator[DropServer]:
    server = DropServer(services.db, domain=DOMAIN, max_size=64 * 1024)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def send(server: DropServer, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, object]:
    with smtplib.SMTP(server.host, server.port, timeout=10) as c:
        return dict(c.sendmail(mail_from, rcpts, raw))


async def asend(
    server: DropServer, mail_from: str, rcpts: list[str], raw: bytes
) -> dict[str, object]:
    return await asyncio.to_thread(send, server, mail_from, rcpts, raw)


def address_of(services: Services, account: int) -> str:
    return services.db.run(lambda s: drop.drop_address(s, account, DOMAIN))


async def test_unknown_token_or_domain_refused_at_rcpt(
    services: Services, world: World, mailbox: MailboxAccount, drops: DropServer
) -> None:
    me = world.user(mailbox.email)
    account = world.connect(me, mailbox, mode="one_way")
    token = address_of(services, account).split("@")[0]
    raw = message(mailbox.email, "bob@client.test", "Offer")
    for rcpt in (f"nosuchtoken@{DOMAIN}", f"{token}@elsewhere.test"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            await asend(drops, mailbox.email, [rcpt], raw)
        assert err.value.recipients[rcpt][0] == 550
    # a disconnected account's address is refused too
    services.db.run(lambda s: setattr(s.get_one(MailAccount, account), "state", "disconnected"))
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asend(drops, mailbox.email, [f"{token}@{DOMAIN}"], raw)
    assert count(services, Message) == 0


async def test_oversize_refused_at_data_and_malformed_kept(
    services: Services, world: World, mailbox: MailboxAccount, drops: DropServer
) -> None:
    me = world.user(mailbox.email)
    account = world.connect(me, mailbox)  # 2-way accounts have a drop address too
    addr = address_of(services, account)
    big = message(mailbox.email, "bob@client.test", "Big", body=("y" * 70 + "\n") * 1200)

    def oversize() -> int:
        with smtplib.SMTP(drops.host, drops.port, timeout=10) as c:
            c.ehlo()
            c.mail(mailbox.email)  # no SIZE parameter: the limit is met at DATA
            c.rcpt(addr)
            code, _ = c.data(big.replace(b"\n", b"\r\n"))
            return code

    assert await asyncio.to_thread(oversize) == 552
    assert count(services, Message) == 0

    garbage = b"\xff\xfe not a header\r\n\r\n\x00\x01 binary junk \xc3\x28\r\n"
    await asend(drops, mailbox.email, [addr], garbage)
    kept = services.db.run(lambda s: list(s.scalars(select(MessageRaw.raw))))
    assert kept == [garbage]


async def test_forwarded_message_links_by_its_own_participants(
    services: Services, world: World, mailbox: MailboxAccount, drops: DropServer
) -> None:
    me = world.user(mailbox.email)
    alice = world.contact("alice@acme.test")
    carol = world.contact("carol@other.test")
    account = world.connect(me, mailbox, mode="one_way")
    addr = address_of(services, account)

    original = message("alice@acme.test", mailbox.email, "Question", msgid="<q1@acme.test>")
    fwd = EmailMessage()
    fwd["From"] = mailbox.email
    fwd["To"] = "carol@other.test"  # the user forwarded to a colleague and Bcc'd the CRM
    fwd["Subject"] = "Fwd: Question"
    fwd["Message-ID"] = "<fwd1@me.test>"
    fwd.set_content("See below.")
    # attached as a message (7bit), the way mail clients forward "as attachment"
    fwd.add_attachment(email.message_from_bytes(original, policy=email.policy.default))
    await asend(drops, mailbox.email, [addr], fwd.as_bytes())

    assert links_of(services, "fwd1@me.test") == {("contact", alice)}
    assert carol not in {i for _, i in links_of(services, "fwd1@me.test")}
    entries = services.db.run(lambda s: s.scalar(select(TimelineEntry.reason)))
    assert "alice@acme.test" in entries

    # Some clients base64-encode the forwarded message: it is decoded like any part.
    fwd2 = EmailMessage()
    fwd2["From"] = mailbox.email
    fwd2["To"] = "carol@other.test"
    fwd2["Message-ID"] = "<fwd2@me.test>"
    fwd2.set_content("Again.")
    fwd2.add_attachment(original, maintype="message", subtype="rfc822")
    assert b"Content-Transfer-Encoding: base64" in fwd2.as_bytes()
    await asend(drops, mailbox.email, [addr], fwd2.as_bytes())
    assert links_of(services, "fwd2@me.test") == {("contact", alice)}


def test_api_shows_the_drop_address_to_the_owner_only(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        secret_keys=(new_key(),),
        drop_domain=DOMAIN,
    )
    services = Services.open(settings)
    try:

        def make(s: Session) -> tuple[str, str, int]:
            ws = crm.create_workspace(s, "Acme").id
            owner = crm.create_user(s, ws, "owner@acme.test", name="o", role="member")
            admin = crm.create_user(s, ws, "boss@acme.test", name="b", role="admin")
            account = accounts.create_account(
                s,
                workspace_id=ws,
                user_id=owner.user.id,
                email="owner@acme.test",
                provider="imap",
                settings={"imap_host": "127.0.0.1", "imap_port": 993},
                secret=services.box.seal({"password": "x"}),
            )
            return owner.token, admin.token, account

        owner, admin, account = services.db.run(make)
        with TestClient(create_app(services)) as client:
            got = client.get(
                f"/api/accounts/{account}", headers={"Authorization": f"Bearer {owner}"}
            )
            assert got.status_code == 200
            addr = got.json()["drop_address"]
            assert addr == address_of(services, account)
            listed = client.get("/api/accounts", headers={"Authorization": f"Bearer {owner}"})
            assert [a["drop_address"] for a in listed.json()] == [addr]
            # an admin sees the account, but not the address that lets mail into it
            other = client.get(
                "/api/accounts?all_users=true", headers={"Authorization": f"Bearer {admin}"}
            )
            assert [a["drop_address"] for a in other.json()] == [None]
    finally:
        services.close()
