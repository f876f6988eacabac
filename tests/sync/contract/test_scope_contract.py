"""An account's options hold on every provider: which mail a scope lets in (seeds 001,
002: CRM-started threads; 003: whole folders, linked at arrival; contacts by default),
1-way mode with the BCC drop address and auto-created contacts with the workspace's blocklist (seed 004)."""

from __future__ import annotations

import pytest

from crmail.storage import drop, outbound
from crmail.storage.models import MailAccount, Message, Workspace
from crmail.sync.dropbox import DropServer
from tests.factories import message
from tests.sync.contract.conftest import Crm, Mailboxes
from tests.sync.test_dropbox import DOMAIN, asend, drops

__all__ = ["drops"]  # the drop address's SMTP listener, shared with tests/sync/test_dropbox

pytestmark = pytest.mark.db


def header_of(crm: Crm, message_pk: int) -> str:
    header = crm.services.db.run(lambda s: s.get_one(Message, message_pk).message_id)
    assert header is not None
    return header


def send_state(crm: Crm, message_pk: int) -> str | None:
    return crm.services.db.run(lambda s: s.get_one(Message, message_pk).send_state)


async def send(crm: Crm, draft: outbound.OutgoingDraft) -> int:
    u = crm.user()
    queued = await crm.services.act(lambda s: outbound.queue_send(s, u, draft))
    assert isinstance(queued, outbound.SendQueued)
    return queued.message_id


async def test_crm_threads_syncs_only_threads_the_crm_started(mailboxes: Mailboxes) -> None:
    world = mailboxes.new_world()
    server, crm = mailboxes.connect(world, sending=True, scope="crm_threads")
    customer = mailboxes.recipient("buyer")
    contact = world.contact(customer)
    me = server.address
    # A thread started in the mailbox, with the very same contact: never synced.
    server.deliver(message(customer, me, "Private", msgid="<priv1@client.test>"))
    server.file_sent(
        message(
            me, customer, "Re: Private", msgid="<priv2@me.test>", in_reply_to="<priv1@client.test>"
        )
    )
    sent = await send(crm, outbound.OutgoingDraft(to=(customer,), subject="Proposal", text="Here"))
    await server.sync()
    assert send_state(crm, sent) == "sent"
    crm_msgid = header_of(crm, sent)

    # The customer answers the CRM email, then follows up on that answer; the user answers
    # from their mail client; the customer writes again in the private thread.
    server.deliver(
        message(
            customer, me, "Re: Proposal", msgid="<ans1@client.test>", in_reply_to=f"<{crm_msgid}>"
        )
    )
    server.deliver(
        message(
            customer,
            me,
            "Re: Proposal",
            msgid="<ans2@client.test>",
            in_reply_to="<ans1@client.test>",
        )
    )
    server.file_sent(
        message(
            me, customer, "Re: Proposal", msgid="<mine1@me.test>", in_reply_to="<ans1@client.test>"
        )
    )
    server.deliver(
        message(
            customer, me, "Re: Private", msgid="<priv3@client.test>", in_reply_to="<priv2@me.test>"
        )
    )
    await server.sync()
    await server.sync()

    assert crm.stored_ids() == sorted(
        [crm_msgid, "ans1@client.test", "ans2@client.test", "mine1@me.test"]
    )
    threads = {m.thread_id for m in map(crm.message, crm.stored_ids()) if m is not None}
    assert len(threads) == 1
    assert crm.on_timeline("ans1@client.test", contact)
    assert crm.skipped()["not_a_crm_thread"] == 3
    assert server.sent_count() == 3  # the CRM's email filed once, beside the user's two


async def test_folders_scope_stores_everything_there_and_links_at_arrival_only(
    mailboxes: Mailboxes,
) -> None:
    world = mailboxes.new_world()
    alice = world.contact("alice@acme.test")
    deal = world.deal("Renewal", alice)
    server, crm = mailboxes.connect(world, scope="folders", folders=["Projects"])
    me = server.address
    server.file_in(
        "Projects", message("Stan <stan@stranger.test>", me, "An idea", msgid="<s1@stranger.test>")
    )
    server.deliver(message("alice@acme.test", me, "Renewal", msgid="<a1@acme.test>"))
    # a folder the user did not choose stays out
    server.file_in("Personal", message("mum@family.test", me, "Sunday", msgid="<m1@family.test>"))
    await server.sync()

    assert crm.stored_ids() == ["a1@acme.test", "s1@stranger.test"]
    assert crm.links("s1@stranger.test") == set()
    assert crm.links("a1@acme.test") == {("contact", alice), ("deal", deal)}

    # A contact created afterwards: the old message is not linked to it (manual linking
    # exists); mail arriving from now on is.
    stan = world.contact("stan@stranger.test")
    server.file_in(
        "Projects", message("stan@stranger.test", me, "Re: An idea", msgid="<s2@stranger.test>")
    )
    await server.sync()
    assert crm.links("s1@stranger.test") == set()
    assert crm.links("s2@stranger.test") == {("contact", stan)}


async def test_one_way_reads_nothing_and_files_what_the_crm_sends_in_sent(
    mailboxes: Mailboxes,
) -> None:
    world = mailboxes.new_world()
    server, crm = mailboxes.connect(world, sending=True, mode="one_way")
    customer = mailboxes.recipient("buyer")
    world.contact("alice@acme.test")
    world.contact(customer)
    server.deliver(message("alice@acme.test", server.address, "Hi", msgid="<a1@acme.test>"))
    sent = await send(crm, outbound.OutgoingDraft(to=(customer,), subject="Offer", text="..."))
    await server.sync()
    await server.sync()

    assert crm.stored_ids() == [header_of(crm, sent)]  # not Alice's mail, contact or not
    assert send_state(crm, sent) == "sent"
    assert server.sent_count() == 1
    assert crm.services.db.run(lambda s: s.get_one(MailAccount, crm.account_id).state) == "live"


async def test_auto_create_outgoing_and_incoming_with_the_blocklist(
    mailboxes: Mailboxes,
) -> None:
    world = mailboxes.new_world()

    def block(s):  # type: ignore[no-untyped-def]
        s.get_one(Workspace, world.workspace_id).settings = {
            "auto_create_blocklist": ["@competitor.test", "lawyer@firm.test"]
        }

    mailboxes.services.db.run(block)
    server, crm = mailboxes.connect(world, sending=True, auto_create_contacts=True)
    me = server.address
    coworker = f"coworker-{world.workspace_id}@" + me.split("@")[1]
    world.user(coworker)

    # From the CRM: a new recipient becomes a contact (not a coworker, not blocked).
    sent = await send(
        crm,
        outbound.OutgoingDraft(
            to=("new@client.test",),
            cc=(coworker, "lawyer@firm.test"),
            bcc=("spy@competitor.test",),
            subject="Hello",
            text="...",
        ),
    )
    assert crm.contacts() == {"new@client.test"}
    assert {kind for kind, _ in crm.links(header_of(crm, sent))} == {"contact"}

    # Found in Sent: written in the user's mail client.
    server.file_sent(
        message(
            me,
            ["Fresh Face <fresh@client.test>", "noreply@shop.test"],
            "Intro",
            msgid="<sent1@me.test>",
        )
    )
    # A newsletter the user sent (List-Unsubscribe): bulk, never creates.
    server.file_sent(
        b"List-Unsubscribe: <mailto:unsub@me.test>\n"
        + message(me, "reader@list.test", "News", msgid="<news1@me.test>")
    )
    # Incoming, without auto_create_incoming: nothing is created, nothing stored.
    server.deliver(
        message("stranger@x.test", me, "Question", cc=["cc-person@x.test"], msgid="<in1@x.test>")
    )
    await server.sync()

    assert crm.contacts() == {"new@client.test", "fresh@client.test"}
    got = crm.stored_ids()
    assert "sent1@me.test" in got and "in1@x.test" not in got and "news1@me.test" not in got
    assert {kind for kind, _ in crm.links("sent1@me.test")} == {"contact"}

    # With auto_create_incoming: the To/Cc of incoming mail (not its sender).
    def incoming_on(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, crm.account_id)
        a.settings = {**a.settings, "auto_create_incoming": True}

    crm.services.db.run(incoming_on)
    server.deliver(
        message(
            "stranger2@x.test",
            me,
            "Question",
            cc=["cc2@x.test", "rival@competitor.test"],
            msgid="<in2@x.test>",
        )
    )
    await server.sync()
    assert crm.contacts() == {"new@client.test", "fresh@client.test", "cc2@x.test"}
    assert len(crm.links("in2@x.test")) == 1


async def test_one_way_with_a_bcc_drop_address_stores_and_links_what_is_bccd(
    mailboxes: Mailboxes, drops: DropServer
) -> None:
    world = mailboxes.new_world()
    bob = world.contact("bob@client.test")
    deal = world.deal("Upsell", bob)
    server, crm = mailboxes.connect(world, mode="one_way")
    addr = crm.services.db.run(lambda s: drop.drop_address(s, crm.account_id, DOMAIN))
    raw = message(server.address, "Bob <bob@client.test>", "Offer", msgid="<o1@me.test>")
    # The user's client sends to Bob and Bccs the CRM: the CRM gets the same bytes.
    assert await asend(drops, server.address, [addr.upper()], raw) == {}
    await asend(drops, server.address, [addr], raw)  # a second Bcc stores nothing twice
    assert crm.stored_ids() == ["o1@me.test"]
    assert crm.links("o1@me.test") == {("contact", bob), ("deal", deal)}

    # 1-way: the mailbox itself is never read, even for a contact's mail
    server.deliver(message("bob@client.test", server.address, "Re: Offer", msgid="<b1@c.test>"))
    await server.sync()
    assert crm.stored_ids() == ["o1@me.test"]
