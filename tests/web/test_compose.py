"""Compose and reply from the web app, sent for real: SMTP relay into Dovecot, Sent copies."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable

from sqlalchemy import func, select

from crmail.mime import parse_message
from crmail.storage.models import Message, OutboxAction
from crmail.sync.worker import AccountWorker
from tests.api.conftest import Actor, World
from tests.factories import World as Factory
from tests.factories import message
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST
from tests.sync.test_two_way import folders_on_server
from tests.web.conftest import Browser

BrowserFor = Callable[[Actor], Browser]


def connect(web: World, box: MailboxAccount, relay: SmtpRelay, **settings: object) -> int:
    """The owner's real Dovecot mailbox, sending through ``relay`` (plain SMTP, no AUTH)."""
    smtp = {
        "smtp_host": relay.host,
        "smtp_port": relay.port,
        "smtp_security": "none",
        "smtp_auth": False,
        **settings,
    }
    return Factory(web.services, web.owner.workspace_id).connect(web.owner.id, box, **smtp)


def run_worker(web: World, account: int) -> None:
    asyncio.run(AccountWorker(web.services.db, web.services.box, account, FAST).run_once())


def header_of(web: World, mid: int) -> str | None:
    return web.services.db.run(
        lambda s: s.scalar(select(Message.message_id).where(Message.id == mid))
    )


def queued_sends(web: World) -> int | None:
    return web.services.db.run(
        lambda s: s.scalar(
            select(func.count()).select_from(OutboxAction).where(OutboxAction.kind == "send")
        )
    )


BOUNDARY = "----WebKitFormBoundaryCrmailTest"


def browser_multipart(fields: dict[str, str]) -> bytes:
    """The body Chromium sends for the compose form with no file chosen.

    httpx leaves out ``filename=""`` for an empty file, a browser does not.
    """
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename=""\r\n'
        "Content-Type: application/octet-stream\r\n\r\n\r\n"
    )
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


def message_id_of(location: str) -> int:
    m = re.fullmatch(r"/messages/(\d+)", location)
    assert m, location
    return int(m.group(1))


def test_compose_with_attachment_is_delivered_and_lands_once_in_sent(
    web: World,
    browser: BrowserFor,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("compose-buyer@client.test", "pw-buyer")
    account = connect(web, mailbox, smtp_relay)
    b = browser(web.owner)

    page = b.get("/compose")
    assert page.status_code == 200
    assert "Sends as" in page.text and mailbox.email in page.text
    assert "through your own mailbox" in page.text

    resp = b.post(
        "/compose",
        {"to": customer.email, "subject": "Proposal", "body": "Here it is."},
        files=[("files", ("quote.pdf", b"%PDF-1.4 tiny quote", "application/pdf"))],
    )
    assert resp.status_code == 303, resp.text
    mid = message_id_of(resp.headers["location"])
    assert web.services.sync.queued == [account]  # type: ignore[attr-defined]
    assert queued_sends(web) == 1

    run_worker(web, account)

    state = web.services.db.run(
        lambda s: s.scalar(select(Message.send_state).where(Message.id == mid))
    )
    assert state == "sent"
    assert len(smtp_relay.accepted) == 1
    sent = parse_message(smtp_relay.accepted[0].data)
    assert sent.envelope.subject == "Proposal"
    assert [a.filename for a in sent.attachments] == ["quote.pdf"]
    msgid = header_of(web, mid)
    assert folders_on_server(dovecot, customer.email, f"<{msgid}>") == ["INBOX"]
    assert folders_on_server(dovecot, mailbox.email, f"<{msgid}>").count("Sent") == 1
    # another sync (the Sent folder now holds the copy) appends nothing twice
    run_worker(web, account)
    assert folders_on_server(dovecot, mailbox.email, f"<{msgid}>").count("Sent") == 1
    assert len(smtp_relay.accepted) == 1


def test_reply_from_the_thread_page_threads(
    web: World,
    browser: BrowserFor,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("reply-buyer@client.test", "pw-buyer")
    Factory(web.services, web.owner.workspace_id).contact(customer.email, name="Buyer")
    account = connect(web, mailbox, smtp_relay)
    dovecot.deliver(
        mailbox.email,
        message(
            f"Buyer <{customer.email}>",
            mailbox.email,
            "Pricing question",
            "How much?",
            msgid="<ask1@client.test>",
        ),
    )
    run_worker(web, account)
    parent, thread = web.services.db.run(
        lambda s: tuple(
            s.execute(
                select(Message.id, Message.thread_id).where(
                    Message.message_id == "ask1@client.test"
                )
            ).one()
        )
    )
    b = browser(web.owner)

    page = b.get(f"/threads/{thread}")
    assert page.status_code == 200
    href = re.search(r'href="(/compose\?reply_to=\d+)"', page.text)
    assert href, "no Reply link on the thread page"
    form = b.get(href.group(1))
    assert form.status_code == 200
    assert f'name="reply_to" value="{parent}"' in form.text
    assert f'value="{customer.email}"' in form.text
    assert 'value="Re: Pricing question"' in form.text

    # as a browser sends the form: multipart, the file input left empty (filename="")
    resp = b.client.post(
        "/compose",
        content=browser_multipart(
            {
                "csrf_token": b.csrf,
                "reply_to": str(parent),
                "to": customer.email,
                "subject": "Re: Pricing question",
                "body": "Ten euros.",
            }
        ),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    mid = message_id_of(resp.headers["location"])
    run_worker(web, account)

    reply_id = header_of(web, mid)
    delivered = [a for a in smtp_relay.accepted if f"<{reply_id}>".encode() in a.data]
    assert len(delivered) == 1
    env = parse_message(delivered[0].data).envelope
    assert env.subject == "Re: Pricing question"
    assert env.in_reply_to == ("ask1@client.test",)
    assert env.references == ("ask1@client.test",)
    reply_thread = web.services.db.run(
        lambda s: s.scalar(select(Message.thread_id).where(Message.id == mid))
    )
    assert reply_thread == thread
    assert folders_on_server(dovecot, customer.email, f"<{reply_id}>") == ["INBOX"]
    assert folders_on_server(dovecot, mailbox.email, f"<{reply_id}>").count("Sent") == 1
    assert "Ten euros." in b.get(f"/messages/{mid}/body").text


def test_over_limit_attachment_is_refused_on_the_page_and_queues_nothing(
    web: World,
    browser: BrowserFor,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    connect(web, mailbox, smtp_relay, preset="gmail")
    b = browser(web.owner)
    page = b.get("/compose")
    assert "Sends as" in page.text and "attachments up to 25" in page.text

    big = b"\0" * (26 * 1024 * 1024)
    resp = b.post(
        "/compose",
        {"to": "someone@client.test", "subject": "Huge", "body": "see attached"},
        files=[("files", ("huge.zip", big, "application/zip"))],
    )
    assert resp.status_code in (413, 422)
    assert 'role="alert"' in resp.text
    assert "25" in resp.text and "MB" in resp.text
    # what was typed is kept
    assert 'value="Huge"' in resp.text and "see attached" in resp.text
    assert queued_sends(web) == 0
    assert web.services.db.run(lambda s: s.scalar(select(func.count()).select_from(Message))) == 0
    assert web.services.sync.queued == []  # type: ignore[attr-defined]
    assert smtp_relay.accepted == []


def test_bad_address_and_rate_limit_are_shown_on_the_page(
    web: World,
    browser: BrowserFor,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    connect(web, mailbox, smtp_relay)
    b = browser(web.owner)
    b.get("/compose")
    resp = b.post("/compose", {"to": 'a"b@client.test', "subject": "S", "body": "x"})
    assert resp.status_code == 422
    assert 'role="alert"' in resp.text and "a&#34;b@client.test" in resp.text
    assert queued_sends(web) == 0

    web.services.settings = dataclasses.replace(web.services.settings, sends_per_hour=1)
    assert b.post("/compose", {"to": "a@client.test", "body": "x"}).status_code in (200, 303)
    resp = b.post("/compose", {"to": "a@client.test", "subject": "Again", "body": "x"})
    assert resp.status_code == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 3600
    assert 'role="alert"' in resp.text and "1 per hour" in resp.text
    assert 'value="Again"' in resp.text
    assert queued_sends(web) == 1
