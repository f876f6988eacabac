"""Sending from the API end to end, through real Dovecot and SMTP (issues 12 and 13).

- A stranger's message whose subject decodes to an encoded word (the header-injection
  trick) is synced and replied to: what reaches the SMTP server has exactly the headers
  crmail wrote and the body where it belongs.
- RCPT TO is exactly the addresses written in To/Cc (plus Bcc).
- The author reads the sent message, with its state, before and after the Sent copy
  syncs, in 2-way and 1-way mode.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crmail.api import create_app
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.models import Message
from tests.factories import World, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_sending import sent_copies, smtp_settings, sync_once

# What a stranger can send: a subject (and display name) whose decoded text is itself an
# encoded word for "x<CR><LF>X-Injected: 1"; a References id that is one outright.
LITERAL = "=?utf-8?q?x=0D=0AX-Injected=3A_1?="
HOSTILE = (
    b"From: =?utf-8?q?=3D=3Futf-8=3Fq=3FEve=3D0D=3D0AX-Injected=3D3A=5F2=3F=3D?=\r\n"
    b" <stranger@client.test>\r\n"
    b"To: {me}\r\n"
    b"Subject: =?utf-8?q?=3D=3Futf-8=3Fq=3Fx=3D0D=3D0AX-Injected=3D3A=5F1=3F=3D?=\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <hostile.1@client.test>\r\n"
    b"References: <=?utf-8?q?r=0D=0AX-Injected=3A_3?=@client.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Please reply.\r\n"
)


@dataclass
class Crm:
    services: Services
    world: World
    client: TestClient
    account: int
    headers: dict[str, str]

    def get(self, mid: int) -> dict[str, object]:
        r = self.client.get(f"/api/messages/{mid}", headers=self.headers)
        assert r.status_code == 200, r.json()
        body: dict[str, object] = r.json()
        return body


@pytest.fixture
def crm_app(
    services: Services, dovecot: Dovecot, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> Iterator[Crm]:
    world = new_world(services)
    new = services.db.run(
        lambda s: crm.create_user(s, world.workspace_id, mailbox.email, name="Ana Agent")
    )
    world.contact("stranger@client.test")
    account = world.connect(new.user.id, mailbox, **smtp_settings(smtp_relay))
    with TestClient(create_app(services)) as client:
        yield Crm(services, world, client, account, {"Authorization": f"Bearer {new.token}"})


def _header_names(raw: bytes) -> list[str]:
    return [k.lower() for k, _ in email.message_from_bytes(raw, policy=policy.compat32).items()]


async def test_reply_to_a_hostile_subject_sends_no_injected_header(
    crm_app: Crm, dovecot: Dovecot, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> None:
    services = crm_app.services
    dovecot.add_user("stranger@client.test", "pw-stranger")
    dovecot.deliver(mailbox.email, HOSTILE.replace(b"{me}", mailbox.email.encode()))
    await sync_once(services, crm_app.account)
    parent, stored_subject = services.db.run(
        lambda s: s.execute(
            select(Message.id, Message.subject).where(Message.message_id == "hostile.1@client.test")
        ).one()
    )
    assert stored_subject == LITERAL  # the premise: the stranger's text, stored as such

    r = crm_app.client.post(
        f"/api/messages/{parent}/reply", json={"text": "Thanks"}, headers=crm_app.headers
    )
    assert r.status_code == 202, r.json()
    await sync_once(services, crm_app.account)

    (sent,) = smtp_relay.accepted
    assert sent.rcpt_tos == ("stranger@client.test",)
    assert _header_names(sent.data) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    ]
    head, body = sent.data.split(b"\r\n\r\n", 1)
    assert body == b"Thanks\r\n"
    assert b"X-Injected" not in head
    # Readers that decode encoded words (the stdlib's modern policy) see the literal text.
    modern = email.message_from_bytes(sent.data, policy=policy.default)
    assert str(modern["Subject"]) == f"Re: {LITERAL}"
    assert str(modern["References"]) == "<hostile.1@client.test>"
    assert not [k for k in modern if "injected" in k.lower()]
    # and the stranger's mailbox got the same bytes, no extra header either
    delivered = dovecot.doveadm(
        "fetch", "-u", "stranger@client.test", "hdr", "mailbox", "INBOX", "all"
    )
    assert "X-Injected" not in delivered


async def test_rcpt_to_is_exactly_the_header_addresses(
    crm_app: Crm, dovecot: Dovecot, smtp_relay: SmtpRelay
) -> None:
    for user in ("bob@client.test", "carol@client.test", "boss@client.test"):
        dovecot.add_user(user, "pw")
    r = crm_app.client.post(
        "/api/messages",
        json={
            "to": ["Bob@Client.Test", " <carol@client.test> "],
            "cc": ["bob@client.test"],
            "bcc": ["boss@client.test"],
            "text": "x",
        },
        headers=crm_app.headers,
    )
    assert r.status_code == 202, r.json()
    await sync_once(crm_app.services, crm_app.account)
    (sent,) = smtp_relay.accepted
    msg = email.message_from_bytes(sent.data, policy=policy.default)
    written = [a.addr_spec for name in ("To", "Cc") for a in msg[name].addresses]
    assert written == ["bob@client.test", "carol@client.test", "bob@client.test"]
    assert list(sent.rcpt_tos) == [*dict.fromkeys(written), "boss@client.test"]
    assert "Bcc" not in msg


@pytest.mark.parametrize("mode", ["two_way", "one_way"])
async def test_author_reads_the_sent_message_before_and_after_the_sent_copy(
    crm_app: Crm, dovecot: Dovecot, mailbox: MailboxAccount, mode: str
) -> None:
    from crmail.storage.models import MailAccount

    def set_mode(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, crm_app.account)
        a.settings = {**a.settings, "mode": mode}

    services = crm_app.services
    services.db.run(set_mode)
    dovecot.add_user("newcomer@client.test", "pw")  # not a contact: nothing links the message
    r = crm_app.client.post(
        "/api/messages",
        json={"to": ["newcomer@client.test"], "subject": "Intro", "text": "x"},
        headers=crm_app.headers,
    )
    assert r.status_code == 202, r.json()
    mid = r.json()["message_id"]
    before = crm_app.get(mid)
    assert (before["send_state"], before["send_error"], before["subject"]) == (
        "queued",
        None,
        "Intro",
    )

    await sync_once(services, crm_app.account)  # sends, files the Sent copy
    header = services.db.run(
        lambda s: s.scalar(select(Message.message_id).where(Message.id == mid))
    )
    assert sent_copies(dovecot, mailbox.email, header) == 1
    await sync_once(services, crm_app.account)  # 2-way: the Sent copy syncs back
    after = crm_app.get(mid)
    assert (after["send_state"], after["send_error"]) == ("sent", None)
    placements = after["placements"]
    assert isinstance(placements, list)
    assert [p["folder"] for p in placements] == (["Sent"] if mode == "two_way" else [])
