"""Sending from the CRM: real SMTP (aiosmtpd relaying into Dovecot), Sent copies, replies."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from crmail.errors import AttachmentTypeNotAllowed, InvalidInput, MessageTooLarge
from crmail.mime import parse_message
from crmail.services import Services
from crmail.storage import outbound
from crmail.storage.models import MailAccount, Message, OutboxAction, TimelineEntry
from crmail.sync.worker import AccountWorker
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST, count, server_flags
from tests.sync.test_two_way import folders_on_server, user


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def smtp_settings(relay: SmtpRelay) -> dict[str, object]:
    return {
        "smtp_host": relay.host,
        "smtp_port": relay.port,
        "smtp_security": "none",
        "smtp_auth": False,
    }


def sent_copies(dovecot: Dovecot, user_email: str, msgid: str) -> int:
    return folders_on_server(dovecot, user_email, f"<{msgid}>").count("Sent")


def header_of(services: Services, mid: int) -> str:
    return services.db.run(lambda s: s.scalar(select(Message.message_id).where(Message.id == mid)))


def send_state(services: Services, mid: int) -> tuple[str, str | None]:
    return services.db.run(
        lambda s: tuple(
            s.execute(select(Message.send_state, Message.send_error).where(Message.id == mid)).one()
        )
    )


async def sync_once(services: Services, account: int) -> None:
    await AccountWorker(services.db, services.box, account, FAST).run_once()


async def test_send_reply_and_sent_copy(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("buyer@client.test", "pw-buyer")
    me = world.user(mailbox.email)
    contact = world.contact(customer.email)
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    u = user(services, world, me)

    draft = outbound.OutgoingDraft(to=(customer.email,), subject="Proposal", text="Here it is.")
    q = await services.act(lambda s: outbound.queue_send(s, u, draft))
    assert isinstance(q, outbound.SendQueued)
    await sync_once(services, account)

    assert send_state(services, q.message_id) == ("sent", None)
    assert len(smtp_relay.accepted) == 1
    msgid = header_of(services, q.message_id)
    assert folders_on_server(dovecot, customer.email, f"<{msgid}>") == ["INBOX"]
    assert sent_copies(dovecot, mailbox.email, msgid) == 1
    assert "\\Seen" in server_flags(dovecot, mailbox.email, "Sent")[f"<{msgid}>"]
    links = services.db.run(
        lambda s: s.execute(select(TimelineEntry.subject_type, TimelineEntry.subject_id)).all()
    )
    assert ("contact", contact) in links
    # syncing again (the Sent folder now holds the copy) stores nothing twice
    await sync_once(services, account)
    assert count(services, Message) == 1
    assert sent_copies(dovecot, mailbox.email, msgid) == 1

    # the customer answers; we reply from the CRM
    answer = message(
        customer.email,
        mailbox.email,
        "Re: Proposal",
        "Looks good",
        msgid="<ans1@client.test>",
        in_reply_to=f"<{msgid}>",
    )
    dovecot.deliver(mailbox.email, answer)
    await sync_once(services, account)
    parent = services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == "ans1@client.test"))
    )
    r = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=(customer.email,), text="Great"), reply_to=parent
        )
    )
    assert isinstance(r, outbound.SendQueued)
    await sync_once(services, account)
    reply_id = header_of(services, r.message_id)
    delivered = [a for a in smtp_relay.accepted if f"<{reply_id}>".encode() in a.data]
    env = parse_message(delivered[0].data).envelope
    assert env.subject == "Re: Proposal"
    assert env.in_reply_to == ("ans1@client.test",)
    assert env.references == (msgid, "ans1@client.test")
    threads = services.db.run(lambda s: set(s.scalars(select(Message.thread_id))))
    assert len(threads) == 1
    assert sent_copies(dovecot, mailbox.email, reply_id) == 1
    assert "\\Answered" in server_flags(dovecot, mailbox.email)["<ans1@client.test>"]
    # the customer's client threads it too: the reply arrived referencing their message
    assert folders_on_server(dovecot, customer.email, f"<{reply_id}>") == ["INBOX"]


async def test_crash_between_smtp_and_sent_append(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    me = world.user(mailbox.email)
    world.contact("cto@client.test")
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    u = user(services, world, me)
    q = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=("cto@client.test",), text="hi")
        )
    )
    assert isinstance(q, outbound.SendQueued)

    # Run the SMTP stage only, then "crash": the action is left running at stage "sent".
    from crmail.storage import mail, outbox
    from crmail.sync.sending import Sending, smtp_settings_for

    info = services.db.run(lambda s: mail.account_info(s, account))
    action = services.db.run(lambda s: outbox.claim_next(s, account))
    assert action is not None
    await Sending(services.db, smtp_settings_for(info, services.box), account=info)._hand_to_smtp(
        action
    )
    assert len(smtp_relay.accepted) == 1
    assert services.db.run(lambda s: s.get_one(OutboxAction, action.id).state) == "running"

    await sync_once(services, account)  # the restart
    assert len(smtp_relay.accepted) == 1, "sent twice"
    msgid = header_of(services, q.message_id)
    assert sent_copies(dovecot, mailbox.email, msgid) == 1
    # a second restart changes nothing
    await sync_once(services, account)
    assert len(smtp_relay.accepted) == 1
    assert sent_copies(dovecot, mailbox.email, msgid) == 1


async def test_crash_during_smtp_is_never_resent_blindly(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    me = world.user(mailbox.email)
    world.contact("cfo@client.test")
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    u = user(services, world, me)
    q = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=("cfo@client.test",), text="hi")
        )
    )
    assert isinstance(q, outbound.SendQueued)
    # the crash left the action in the "sending" stage: unknown whether SMTP took it
    from crmail.storage import outbox

    def interrupted(s):  # type: ignore[no-untyped-def]
        a = outbox.claim_next(s, account)
        outbox.save_progress(s, a.id, {**a.payload, "stage": "sending"})

    services.db.run(interrupted)
    await sync_once(services, account)
    assert smtp_relay.accepted == []
    state, why = send_state(services, q.message_id)
    assert state == "unknown" and "not sent again automatically" in (why or "")
    # the user decides to send it again
    await services.act(lambda s: outbound.retry_send(s, u, q.message_id))
    await sync_once(services, account)
    assert len(smtp_relay.accepted) == 1
    assert send_state(services, q.message_id)[0] == "sent"


async def test_smtp_refusals_are_classified(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    me = world.user(mailbox.email)
    world.contact("nobody@client.test")
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    u = user(services, world, me)
    smtp_relay.handler.rcpt_replies["nobody@client.test"] = "550 5.1.1 no such user"
    q = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=("nobody@client.test",), text="x")
        )
    )
    assert isinstance(q, outbound.SendQueued)
    await sync_once(services, account)
    state, why = send_state(services, q.message_id)
    assert state == "failed" and "550" in (why or "")
    assert (
        services.db.run(
            lambda s: s.scalar(
                select(OutboxAction.state).where(OutboxAction.message_id == q.message_id)
            )
        )
        == "failed"
    )

    smtp_relay.handler.rcpt_replies.clear()
    smtp_relay.handler.data_reply = "451 4.3.0 try again later"
    q2 = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=("nobody@client.test",), text="y")
        )
    )
    assert isinstance(q2, outbound.SendQueued)
    await sync_once(services, account)
    state, why = send_state(services, q2.message_id)
    assert state == "queued" and "451" in (why or "")
    action = services.db.run(
        lambda s: s.scalars(
            select(OutboxAction).where(OutboxAction.message_id == q2.message_id)
        ).one()
    )
    assert action.state == "pending" and action.attempts == 1
    smtp_relay.handler.data_reply = None
    services.db.run(
        lambda s: s.execute(
            OutboxAction.__table__.update().values(next_attempt_at=action.created_at)
        )
    )
    await sync_once(services, account)
    assert send_state(services, q2.message_id)[0] == "sent"


async def test_attachment_limits_are_clear_errors_before_sending(
    services: Services, world: World, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> None:
    me = world.user(mailbox.email)
    gmail = world.connect(me, mailbox, preset="gmail", **smtp_settings(smtp_relay))
    u = user(services, world, me)
    big = outbound.NewAttachment("deck.pdf", "application/pdf", b"x" * (26 * 1024 * 1024))
    with pytest.raises(MessageTooLarge) as err:
        services.db.run(
            lambda s: outbound.queue_send(
                s, u, outbound.OutgoingDraft(to=("a@b.test",), attachments=(big,))
            )
        )
    assert "deck.pdf" in err.value.message and "25" in err.value.message
    services.db.run(
        lambda s: s.execute(
            MailAccount.__table__.update()
            .where(MailAccount.id == gmail)
            .values(settings={**s.get_one(MailAccount, gmail).settings, "preset": "outlook"})
        )
    )
    exe = outbound.NewAttachment("setup.exe", "application/octet-stream", b"MZ")
    with pytest.raises(AttachmentTypeNotAllowed):
        services.db.run(
            lambda s: outbound.queue_send(
                s, u, outbound.OutgoingDraft(to=("a@b.test",), attachments=(exe,))
            )
        )
    four_mb = outbound.NewAttachment("photo.png", "image/png", b"x" * (4 * 1024 * 1024))
    with pytest.raises(MessageTooLarge):
        services.db.run(
            lambda s: outbound.queue_send(
                s, u, outbound.OutgoingDraft(to=("a@b.test",), attachments=(four_mb,))
            )
        )
    assert count(services, Message) == 0
    assert count(services, OutboxAction) == 0


async def test_sender_identity_rules(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    me = world.user(mailbox.email)
    u = user(services, world, me)
    with pytest.raises(InvalidInput):  # individual email needs the user's own mailbox
        services.db.run(
            lambda s: outbound.sender_for(s, u, "individual", None, default_from="crm@acme.test")
        )
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    pick = lambda kind, frm: services.db.run(  # noqa: E731
        lambda s: outbound.sender_for(s, u, kind, frm, default_from="crm@acme.test")
    )
    assert (pick("individual", None).via, pick("individual", None).account_id) == (
        "account",
        account,
    )
    assert pick("bulk", None).via == "account"
    assert pick("bulk", mailbox.email).via == "account"
    other = pick("bulk", "promo@acme.test")
    assert (other.via, other.from_address) == ("default_provider", "promo@acme.test")
    wf = pick("workflow", None)
    assert (wf.via, wf.from_address) == ("default_provider", "crm@acme.test")
    with pytest.raises(InvalidInput):
        services.db.run(lambda s: outbound.sender_for(s, u, "workflow", None, default_from=None))


async def test_default_provider_sends_bulk_and_workflow(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    from crmail.sync.sending import smtp_settings_from_url
    from crmail.sync.service import SyncService

    me = world.user(mailbox.email)
    customer = dovecot.add_user("lead@client.test", "pw-lead")
    world.connect(me, mailbox)  # an account without SMTP: workflow mail does not use it
    u = user(services, world, me)
    with SmtpRelay(dovecot.host, dovecot.lmtp_port) as default_relay:
        service = SyncService(
            services.db,
            services.box,
            FAST,
            scan_interval=0.2,
            default_smtp=smtp_settings_from_url(
                f"smtp://{default_relay.host}:{default_relay.port}?security=none"
            ),
        )
        services.sync = service
        service.start()
        try:
            q = await services.act(
                lambda s: outbound.queue_send(
                    s,
                    u,
                    outbound.OutgoingDraft(to=(customer.email,), text="Welcome!"),
                    kind="workflow",
                    default_from="crm@acme.test",
                )
            )
            assert isinstance(q, outbound.SendQueued)
            for _ in range(200):
                if default_relay.accepted:
                    break
                await asyncio.sleep(0.02)
            assert [a.mail_from for a in default_relay.accepted] == ["crm@acme.test"]
            assert smtp_relay.accepted == []
            msgid = header_of(services, q.message_id)
            assert folders_on_server(dovecot, customer.email, f"<{msgid}>") == ["INBOX"]
            assert sent_copies(dovecot, mailbox.email, msgid) == 0  # not the user's mailbox
        finally:
            await service.stop()
