"""The web app in a real browser: connect a Dovecot mailbox, watch the import, use the Inbox."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from crmail.storage import crm
from crmail.storage.models import MailAccount, Message
from tests.browser.conftest import Crm, shot, sign_in
from tests.browser.flows import wait_imported, wait_until
from tests.factories import message
from tests.servers import Dovecot, MailboxAccount, SmtpRelay

pytestmark = pytest.mark.browser


def folders_on_server(dovecot: Dovecot, user: str, msgid: str) -> list[str]:
    out = dovecot.doveadm(
        "fetch", "-u", user, "mailbox", "mailbox", "*", "header", "Message-ID", msgid
    )
    return sorted(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("mailbox:")
    )


@pytest.fixture
def auth_relay(dovecot: Dovecot, mailbox: MailboxAccount) -> Iterator[SmtpRelay]:
    """SMTP into Dovecot that requires AUTH with the mailbox's own login (as a provider does)."""
    with SmtpRelay(
        dovecot.host, dovecot.lmtp_port, users={mailbox.email: mailbox.password}
    ) as relay:
        yield relay


def test_connect_import_timeline_done_teammate_view_and_reply(
    live: Crm, page: object, dovecot: Dovecot, mailbox: MailboxAccount, auth_relay: SmtpRelay
) -> None:
    p = page
    contact = live.services.db.run(
        lambda s: (
            crm.create_contact(
                s, live.workspace_id, name="Ivy Client", emails=["ivy@client.test"]
            ).id
        )
    )
    for i in range(3):
        dovecot.deliver(
            mailbox.email,
            message(
                "Ivy Client <ivy@client.test>",
                mailbox.email,
                f"Pricing question {i}",
                f"Hello #{i}",
                msgid=f"<p{i}@client.test>",
            ),
        )
    dovecot.deliver(
        mailbox.email,
        message("mum@family.test", mailbox.email, "Sunday lunch", msgid="<mum@family.test>"),
    )

    sign_in(p, live.url, live.owner.email)
    p.goto(f"{live.url}/settings/email")  # type: ignore[attr-defined]
    p.select_option("select[name=provider]", "other")  # type: ignore[attr-defined]
    p.fill("input[name=email]", mailbox.email)  # type: ignore[attr-defined]
    p.fill("input[name=password]", mailbox.password)  # type: ignore[attr-defined]
    p.fill("input[name=imap_host]", mailbox.host)  # type: ignore[attr-defined]
    p.fill("input[name=imap_port]", str(mailbox.tls_port))  # type: ignore[attr-defined]
    p.select_option("select[name=imap_security]", "tls")  # type: ignore[attr-defined]
    p.fill("input[name=ca_file]", mailbox.ca_file)  # type: ignore[attr-defined]
    p.fill("input[name=smtp_host]", auth_relay.host)  # type: ignore[attr-defined]
    p.fill("input[name=smtp_port]", str(auth_relay.port))  # type: ignore[attr-defined]
    p.select_option("select[name=smtp_security]", "none")  # type: ignore[attr-defined]
    p.click("button:has-text('Test connection')")  # type: ignore[attr-defined]
    p.wait_for_selector("text=Connection works")  # type: ignore[attr-defined]
    shot(p, "01-settings-connect-tested")
    p.click("#connect button.primary")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/settings/email/accounts/*")  # type: ignore[attr-defined]

    wait_imported(p)
    values = p.eval_on_selector_all("#health progress", "els => els.map(e => e.value)")  # type: ignore[attr-defined]
    assert values and all(v == 100 for v in values)
    shot(p, "02-sync-health")

    p.goto(f"{live.url}/contacts/{contact}")  # type: ignore[attr-defined]
    for i in range(3):
        assert p.locator(f"text=Pricing question {i}").count() == 1  # type: ignore[attr-defined]
    assert p.locator("text=Sunday lunch").count() == 0  # type: ignore[attr-defined]
    shot(p, "03-contact-timeline")

    p.goto(f"{live.url}/inbox")  # type: ignore[attr-defined]
    row = p.locator("li.item", has_text="Pricing question 1")  # type: ignore[attr-defined]
    assert row.locator("button.done").count() == 1
    shot(p, "04-inbox")
    row.locator("button.done").click()
    p.wait_for_load_state()  # type: ignore[attr-defined]
    assert p.locator("li.item", has_text="Pricing question 1").count() == 0  # type: ignore[attr-defined]
    wait_until(lambda: folders_on_server(dovecot, mailbox.email, "<p1@client.test>") == ["Archive"])

    # The thread page renders the body in a sandboxed frame.
    p.goto(f"{live.url}/inbox")  # type: ignore[attr-defined]
    p.click("li.item >> text=Pricing question 0")  # type: ignore[attr-defined]
    frame = p.frame_locator("iframe.body")  # type: ignore[attr-defined]
    assert "Hello #0" in frame.locator("body").inner_text()
    shot(p, "05-thread")

    sign_in(p, live.url, live.teammate.email)
    p.goto(f"{live.url}/inbox?view={live.owner.id}")  # type: ignore[attr-defined]
    assert p.locator("li.item", has_text="Pricing question 0").count() == 1  # type: ignore[attr-defined]
    assert p.locator("button.done").count() == 0  # type: ignore[attr-defined]
    assert p.locator("details.snooze").count() == 0  # type: ignore[attr-defined]
    assert p.locator("li.item input[type=checkbox]").count() == 0  # type: ignore[attr-defined]
    assert p.locator("text=read-only").count() == 1  # type: ignore[attr-defined]
    shot(p, "06-teammate-inbox-read-only")
    account = live.services.db.run(lambda s: s.scalar(select(MailAccount.state)))
    assert account == "live"

    # Back as the owner: reply to Ivy's thread from the browser; it is sent through the
    # relay (AUTH with the mailbox login) and its copy lands in the server's Sent once.
    dovecot.add_user("ivy@client.test", "pw-ivy-browser")  # a recipient the relay can reach
    sign_in(p, live.url, live.owner.email)
    p.goto(f"{live.url}/inbox")  # type: ignore[attr-defined]
    p.click("li.item >> text=Pricing question 0")  # type: ignore[attr-defined]
    p.click("a.button:has-text('Reply')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/compose?reply_to=*")  # type: ignore[attr-defined]
    assert p.input_value("input[name=to]") == "ivy@client.test"  # type: ignore[attr-defined]
    assert p.input_value("input[name=subject]") == "Re: Pricing question 0"  # type: ignore[attr-defined]
    assert mailbox.email in p.inner_text("p.identity")  # type: ignore[attr-defined]
    p.fill("textarea[name=body]", "Happy to help: 10 EUR a seat.")  # type: ignore[attr-defined]
    p.click("button.primary:has-text('Send')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/threads/*")  # type: ignore[attr-defined]

    def reply() -> tuple[str | None, str | None]:
        row = live.services.db.run(
            lambda s: s.execute(
                select(Message.message_id, Message.send_state).where(Message.origin == "crm")
            ).one_or_none()
        )
        return (row[0], row[1]) if row else (None, None)

    wait_until(lambda: reply()[1] == "sent")
    msgid = reply()[0]
    assert msgid

    def sent_copies() -> list[str]:
        out = dovecot.doveadm("fetch", "-u", mailbox.email, "hdr.message-id", "mailbox", "Sent")
        return [line for line in out.splitlines() if f"<{msgid}>" in line]

    wait_until(lambda: len(sent_copies()) >= 1)
    time.sleep(1.0)  # a few more sync passes of the live service: still exactly one copy
    assert len(sent_copies()) == 1
    assert folders_on_server(dovecot, "ivy@client.test", f"<{msgid}>") == ["INBOX"]
    assert len(auth_relay.accepted) == 1
    p.reload()  # type: ignore[attr-defined]
    assert p.locator("text=Sending…").count() == 0  # type: ignore[attr-defined]
    bodies = p.locator("iframe.body")  # type: ignore[attr-defined]
    assert bodies.count() == 2
    frames = p.frame_locator("iframe.body")  # type: ignore[attr-defined]
    assert "Hello #0" in frames.first.locator("body").inner_text()
    assert "Happy to help" in frames.last.locator("body").inner_text()
    shot(p, "08-reply-sent")
