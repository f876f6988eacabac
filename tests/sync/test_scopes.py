"""Per-account sync options against real Dovecot and SMTP: scopes, 1-way mode, auto-create.

Each scenario is one behaviour of the seed pages: HighLevel's CRM-started threads
(001/002), Onpipeline's synced folders with link-at-arrival (003), Freshsales' 1-way
mode and auto-created contacts (004).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.services import Services
from crmail.storage import accounts, outbound
from crmail.storage.models import (
    Contact,
    ContactEmail,
    Folder,
    MailAccount,
    Message,
    TimelineEntry,
    Workspace,
)
from crmail.sync.worker import AccountWorker
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST, count
from tests.sync.test_sending import header_of, send_state, sent_copies, smtp_settings
from tests.sync.test_two_way import user


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


async def sync_once(services: Services, account: int) -> None:
    await AccountWorker(services.db, services.box, account, FAST).run_once()


def stored(services: Services) -> set[str]:
    return services.db.run(lambda s: set(s.scalars(select(Message.message_id))))


def links_of(services: Services, msgid: str) -> set[tuple[str, int]]:
    return services.db.run(
        lambda s: {
            (t, i)
            for t, i in s.execute(
                select(TimelineEntry.subject_type, TimelineEntry.subject_id)
                .join(Message, Message.id == TimelineEntry.message_id)
                .where(Message.message_id == msgid)
            ).all()
        }
    )


def skipped(services: Services, account: int, folder: str) -> dict[str, int]:
    return services.db.run(
        lambda s: s.scalar(
            select(Folder.skipped).where(Folder.account_id == account, Folder.name == folder)
        )
    )


def contact_emails(services: Services, workspace_id: int) -> set[str]:
    return services.db.run(
        lambda s: set(
            s.scalars(select(ContactEmail.email).where(ContactEmail.workspace_id == workspace_id))
        )
    )


# --- scope "crm_threads" (seeds 001, 002) ------------------------------------------------


async def test_crm_threads_sync_only_threads_the_crm_started(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("ct-buyer@client.test", "pw-ct-buyer")
    me = world.user(mailbox.email)
    contact = world.contact(customer.email)
    account = world.connect(me, mailbox, scope="crm_threads", **smtp_settings(smtp_relay))
    u = user(services, world, me)

    # A thread started in the mailbox, with the very same contact: never synced.
    dovecot.deliver(
        mailbox.email,
        message(customer.email, mailbox.email, "Private", msgid="<priv1@client.test>"),
    )
    dovecot.append(
        mailbox.email,
        "Sent",
        message(
            mailbox.email,
            customer.email,
            "Re: Private",
            msgid="<priv2@me.test>",
            in_reply_to="<priv1@client.test>",
        ),
        flags=["\\Seen"],
    )
    draft = outbound.OutgoingDraft(to=(customer.email,), subject="Proposal", text="Here it is.")
    q = await services.act(lambda s: outbound.queue_send(s, u, draft))
    assert isinstance(q, outbound.SendQueued)
    await sync_once(services, account)
    crm_msgid = header_of(services, q.message_id)
    assert send_state(services, q.message_id) == ("sent", None)

    # The customer answers the CRM email; the user answers back from their mail client;
    # the customer writes again in the private thread.
    dovecot.deliver(
        mailbox.email,
        message(
            customer.email,
            mailbox.email,
            "Re: Proposal",
            msgid="<ans1@client.test>",
            in_reply_to=f"<{crm_msgid}>",
        ),
    )
    # A follow-up naming only that answer, in the same batch: it joins the thread too.
    dovecot.deliver(
        mailbox.email,
        message(
            customer.email,
            mailbox.email,
            "Re: Proposal",
            msgid="<ans1b@client.test>",
            in_reply_to="<ans1@client.test>",
        ),
    )
    dovecot.append(
        mailbox.email,
        "Sent",
        message(
            mailbox.email,
            customer.email,
            "Re: Proposal",
            msgid="<mine1@me.test>",
            in_reply_to="<ans1@client.test>",  # names only the customer's answer
        ),
        flags=["\\Seen"],
    )
    dovecot.deliver(
        mailbox.email,
        message(
            customer.email,
            mailbox.email,
            "Re: Private",
            msgid="<priv3@client.test>",
            in_reply_to="<priv2@me.test>",
        ),
    )
    await sync_once(services, account)

    assert stored(services) == {
        crm_msgid,
        "ans1@client.test",
        "ans1b@client.test",
        "mine1@me.test",
    }
    threads = services.db.run(lambda s: set(s.scalars(select(Message.thread_id))))
    assert len(threads) == 1
    assert ("contact", contact) in links_of(services, "ans1@client.test")
    assert skipped(services, account, "INBOX") == {"not_a_crm_thread": 2}
    assert skipped(services, account, "Sent") == {"not_a_crm_thread": 1}

    # The owner changes the connected address (same mailbox and login).
    new_address = "renamed-" + mailbox.email
    services.db.run(
        lambda s: accounts.update_connection(s, u, account, settings={}, email=new_address)
    )
    dovecot.deliver(
        mailbox.email,
        message(
            customer.email,
            new_address,
            "Re: Proposal",
            msgid="<ans2@client.test>",
            in_reply_to=f"<{crm_msgid}>",
        ),
    )
    # New CRM email goes from the new address, and its thread syncs.
    q2 = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=(customer.email,), subject="Contract", text="Sign")
        )
    )
    assert isinstance(q2, outbound.SendQueued)
    await sync_once(services, account)
    new_msgid = header_of(services, q2.message_id)
    assert services.db.run(
        lambda s: s.scalar(select(Message.crm_from).where(Message.id == q2.message_id))
    ) == (new_address)
    dovecot.deliver(
        mailbox.email,
        message(
            customer.email,
            new_address,
            "Re: Contract",
            msgid="<ans3@client.test>",
            in_reply_to=f"<{new_msgid}>",
        ),
    )
    await sync_once(services, account)
    got = stored(services)
    assert "ans2@client.test" not in got  # the old address's thread stopped syncing
    assert "ans3@client.test" in got
    assert sent_copies(dovecot, mailbox.email, new_msgid) == 1


# --- scope "folders" (seed 003) --------------------------------------------------------------


async def test_folders_scope_stores_everything_and_links_at_arrival_only(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    me = world.user(mailbox.email)
    alice = world.contact("alice@acme.test")
    deal = world.deal("Renewal", alice)
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Projects")
    dovecot.doveadm("mailbox", "create", "-u", mailbox.email, "Personal")
    account = world.connect(me, mailbox, scope="folders", folders=["Projects"])

    dovecot.append(
        mailbox.email,
        "Projects",
        message("Stan <stan@stranger.test>", mailbox.email, "An idea", msgid="<s1@stranger.test>"),
    )
    dovecot.deliver(
        mailbox.email, message("alice@acme.test", mailbox.email, "Renewal", msgid="<a1@acme.test>")
    )
    # a folder the user did not choose stays out
    dovecot.append(
        mailbox.email,
        "Personal",
        message("mum@family.test", mailbox.email, "Sunday", msgid="<m1@family.test>"),
    )
    await sync_once(services, account)

    assert stored(services) == {"s1@stranger.test", "a1@acme.test"}
    assert links_of(services, "s1@stranger.test") == set()
    assert links_of(services, "a1@acme.test") == {("contact", alice), ("deal", deal)}

    # A contact created afterwards: the old message is not linked to it (manual
    # linking exists); mail arriving from now on is.
    stan = world.contact("stan@stranger.test")
    dovecot.append(
        mailbox.email,
        "Projects",
        message("stan@stranger.test", mailbox.email, "Re: An idea", msgid="<s2@stranger.test>"),
    )
    await sync_once(services, account)
    assert links_of(services, "s1@stranger.test") == set()
    assert links_of(services, "s2@stranger.test") == {("contact", stan)}


# --- 1-way mode (seed 004) ---------------------------------------------------------------------


async def test_one_way_fetches_nothing_but_files_crm_sends_in_sent(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("ow-buyer@client.test", "pw-ow-buyer")
    me = world.user(mailbox.email)
    world.contact("alice@acme.test")
    world.contact(customer.email)
    account = world.connect(me, mailbox, mode="one_way", **smtp_settings(smtp_relay))
    u = user(services, world, me)
    dovecot.deliver(
        mailbox.email, message("alice@acme.test", mailbox.email, "Hi", msgid="<a1@acme.test>")
    )
    q = await services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=(customer.email,), subject="Offer", text="...")
        )
    )
    assert isinstance(q, outbound.SendQueued)

    await sync_once(services, account)
    await sync_once(services, account)

    msgid = header_of(services, q.message_id)
    assert stored(services) == {msgid}  # not Alice's mail, contact or not
    assert count(services, Folder, Folder.account_id == account) == 0
    assert send_state(services, q.message_id) == ("sent", None)
    assert sent_copies(dovecot, mailbox.email, msgid) == 1
    assert services.db.run(lambda s: s.get_one(MailAccount, account).state) == "live"


# --- auto-create contacts (seed 004) ---------------------------------------------------------


async def test_auto_create_outgoing_and_incoming_with_its_flag(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    me = world.user(mailbox.email)
    world.user("coworker@" + mailbox.email.split("@")[1])
    coworker = "coworker@" + mailbox.email.split("@")[1]

    def block(s):  # type: ignore[no-untyped-def]
        s.get_one(Workspace, world.workspace_id).settings = {
            "auto_create_blocklist": ["@competitor.test", "lawyer@firm.test"]
        }

    services.db.run(block)
    account = world.connect(me, mailbox, auto_create_contacts=True, **smtp_settings(smtp_relay))
    u = user(services, world, me)

    # From the CRM: a new recipient becomes a contact and the message links to it.
    q = await services.act(
        lambda s: outbound.queue_send(
            s,
            u,
            outbound.OutgoingDraft(
                to=("new@client.test",),
                cc=(coworker, "lawyer@firm.test"),
                bcc=("spy@competitor.test",),
                subject="Hello",
                text="...",
            ),
        )
    )
    assert isinstance(q, outbound.SendQueued)
    assert contact_emails(services, world.workspace_id) == {"new@client.test"}
    crm_links = services.db.run(
        lambda s: set(
            s.scalars(
                select(TimelineEntry.subject_type).where(TimelineEntry.message_id == q.message_id)
            )
        )
    )
    assert crm_links == {"contact"}

    # Found in Sent: written in the user's mail client.
    dovecot.append(
        mailbox.email,
        "Sent",
        message(
            mailbox.email,
            ["Fresh Face <fresh@client.test>", "noreply@shop.test"],
            "Intro",
            msgid="<sent1@me.test>",
        ),
        flags=["\\Seen"],
    )
    # A newsletter the user sent (List-Unsubscribe): bulk, never creates.
    dovecot.append(
        mailbox.email,
        "Sent",
        b"List-Unsubscribe: <mailto:unsub@me.test>\n"
        + message(mailbox.email, "reader@list.test", "News", msgid="<news1@me.test>"),
        flags=["\\Seen"],
    )
    # Incoming, without auto_create_incoming: nothing is created, nothing stored.
    dovecot.deliver(
        mailbox.email,
        message(
            "stranger@x.test",
            mailbox.email,
            "Question",
            cc=["cc-person@x.test"],
            msgid="<in1@x.test>",
        ),
    )
    await sync_once(services, account)

    assert contact_emails(services, world.workspace_id) == {"new@client.test", "fresh@client.test"}
    names = services.db.run(lambda s: set(s.scalars(select(Contact.name))))
    assert "Fresh Face" in names
    got = stored(services)
    assert "sent1@me.test" in got and "in1@x.test" not in got and "news1@me.test" not in got
    assert {t for t, _ in links_of(services, "sent1@me.test")} == {"contact"}

    # With auto_create_incoming: the To/Cc of incoming mail (not its sender).
    def incoming_on(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, account)
        a.settings = {**a.settings, "auto_create_incoming": True}

    services.db.run(incoming_on)
    dovecot.deliver(
        mailbox.email,
        message(
            "stranger2@x.test",
            mailbox.email,
            "Question",
            cc=["cc2@x.test", "rival@competitor.test"],
            msgid="<in2@x.test>",
        ),
    )
    await sync_once(services, account)
    assert contact_emails(services, world.workspace_id) == {
        "new@client.test",
        "fresh@client.test",
        "cc2@x.test",
    }
    assert "in2@x.test" in stored(services)
    assert len(links_of(services, "in2@x.test")) == 1
