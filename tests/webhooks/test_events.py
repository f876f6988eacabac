"""Each webhook event type reaches a real receiver, signed, when the real code path runs.

Import through Dovecot, a manual link, a Done, sends through the SMTP relay (accepted and
refused), a revoked password: every change goes through the same storage functions the
API and the sync worker use, and the sender delivers what they emitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.errors import AuthFailed
from crmail.services import Services
from crmail.storage import actions, crm, events, links, outbound
from crmail.storage.models import MailAccount, Message
from crmail.sync.webhooks import WebhookSender, verify_signature
from crmail.sync.worker import AccountWorker
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST
from tests.sync.test_sending import smtp_settings
from tests.webhooks.receiver import Receiver


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


async def deliver_all(services: Services, receiver: Receiver, secret: str) -> list[Event]:
    """Run the real sender until nothing is due; check every signature on the way."""
    sender = WebhookSender(services.db, services.box, allow_http_loopback=True, timeout=5)
    try:
        while await sender.run_once():
            pass
    finally:
        await sender.stop()
    out = []
    for req in receiver.requests:
        assert verify_signature(secret, req.headers, req.body), "bad signature"
        body = json.loads(req.body)
        out.append(Event(body["id"], body["type"], body["data"]))
    receiver.requests.clear()
    return out


def of(evts: list[Event], type: str) -> list[dict[str, Any]]:
    return [e.data for e in evts if e.type == type]


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


async def test_every_event_type_reaches_the_receiver(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
) -> None:
    def setup(s: Session) -> tuple[crm.UserInfo, str]:
        admin = crm.create_user(s, world.workspace_id, "boss@acme.test", role="admin").user
        new = events.create_endpoint(s, admin, services.box, url=receiver.url)
        me = crm.create_user(s, world.workspace_id, mailbox.email).user
        return me, new.secret

    me, secret = services.db.run(setup)
    ivy = world.contact("ivy@client.test", name="Ivy")
    deal = world.deal("Big deal", ivy)
    other_deal = world.deal("Other deal")
    account = world.connect(me.id, mailbox, **smtp_settings(smtp_relay))
    dovecot.deliver(
        mailbox.email, message("ivy@client.test", mailbox.email, "Quote", msgid="<q1@client.test>")
    )
    for i in range(2):
        dovecot.deliver(
            mailbox.email,
            message("stranger@else.test", mailbox.email, f"hi {i}", msgid=f"<s{i}@else.test>"),
        )

    # --- an import through Dovecot ---------------------------------------------------------
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    evts = await deliver_all(services, receiver, secret)
    quote = services.db.run(
        lambda s: s.get_one(
            Message, s.scalar(select(Message.id).where(Message.message_id == "q1@client.test"))
        )
    )
    (received,) = of(evts, "message.received")
    assert received == {
        "message_id": quote.id,
        "thread_id": quote.thread_id,
        "account_id": account,
        "folder": "INBOX",
        "subject": "Quote",
        "from": "ivy@client.test",
    }
    auto = of(evts, "message.linked")
    assert {(d["subject_type"], d["subject_id"]) for d in auto} == {
        ("contact", ivy),
        ("deal", deal),
    }
    assert all(d["message_id"] == quote.id and d["source"] == "auto" for d in auto)
    # one event per reason per step, with the count, not one per message
    assert of(evts, "message.skipped") == [
        {"account_id": account, "folder": "INBOX", "reason": "no_known_contact", "count": 2}
    ]
    assert of(evts, "inbox.updated") == [
        {
            "user_id": me.id,
            "message_id": quote.id,
            "thread_id": quote.thread_id,
            "state": "open",
            "is_read": False,
        }
    ]
    # (the sender delivers concurrently: arrival order is not event order)
    states = {(d["old"], d["new"]) for d in of(evts, "account.state_changed")}
    assert states == {("new", "connecting"), ("connecting", "importing"), ("importing", "live")}
    assert len({e.id for e in evts}) == len(evts)  # every event its own id

    # --- a manual link, a Done ------------------------------------------------------------
    services.db.run(lambda s: links.link(s, me, quote.id, "deal", other_deal))
    await services.act(lambda s: actions.done(s, me, quote.thread_id))
    evts = await deliver_all(services, receiver, secret)
    (manual,) = of(evts, "message.linked")
    assert manual["source"] == "manual" and manual["linked_by"] == me.id
    assert (manual["message_id"], manual["subject_type"], manual["subject_id"]) == (
        quote.id,
        "deal",
        other_deal,
    )
    (done,) = of(evts, "inbox.updated")
    assert (done["message_id"], done["state"], done["is_read"]) == (quote.id, "done", True)

    # --- a send through the relay, and one the relay refuses --------------------------------
    draft = outbound.OutgoingDraft(to=("ivy@client.test",), subject="Offer", text="Here.")
    sent = await services.act(lambda s: outbound.queue_send(s, me, draft))
    assert isinstance(sent, outbound.SendQueued)
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    evts = await deliver_all(services, receiver, secret)
    (ok,) = of(evts, "message.sent")
    assert ok["message_id"] == sent.message_id and ok["account_id"] == account
    assert ok["from"] == mailbox.email and ok["state"] == "sent"
    assert of(evts, "message.send_failed") == []

    with SmtpRelay(dovecot.host, dovecot.lmtp_port, data_reply="554 5.7.1 rejected") as bad:

        def use_bad(s: Session) -> None:
            a = s.get_one(MailAccount, account)
            a.settings = {**a.settings, **smtp_settings(bad)}

        services.db.run(use_bad)
        refused = await services.act(lambda s: outbound.queue_send(s, me, draft))
        assert isinstance(refused, outbound.SendQueued)
        await AccountWorker(services.db, services.box, account, FAST).run_once()
    evts = await deliver_all(services, receiver, secret)
    (failed,) = of(evts, "message.send_failed")
    assert failed["message_id"] == refused.message_id and failed["state"] == "failed"
    assert "rejected" in failed["error"]

    # --- a revoked password -------------------------------------------------------------------
    dovecot.set_password(mailbox.email, "revoked-pw")
    with pytest.raises(AuthFailed):
        await AccountWorker(services.db, services.box, account, FAST).run_once()
    evts = await deliver_all(services, receiver, secret)
    changes = of(evts, "account.state_changed")
    assert {
        "account_id": account,
        "user_id": me.id,
        "old": "connecting",
        "new": "auth_error",
        "error_code": "auth_failed",
    } in changes
    # START from live is a change (live → connecting); nothing repeats an unchanged state
    assert all(d["old"] != d["new"] for d in changes)


async def test_no_endpoint_no_events(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    """A workspace without webhooks stores no events (and builds no payloads)."""
    me = world.user(mailbox.email)
    world.contact("ivy@client.test")
    account = world.connect(me, mailbox)
    dovecot.deliver(mailbox.email, message("ivy@client.test", mailbox.email, "Quote"))
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    from crmail.storage.models import WebhookEvent

    assert services.db.run(lambda s: s.scalars(select(WebhookEvent)).all()) == []
