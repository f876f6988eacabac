"""The two-way sync's promises, run against every provider (Dovecot over IMAP, the fake
Gmail over the Gmail API, the fake Graph over Microsoft Graph): what enters, what changes
elsewhere, what the CRM changes."""

from __future__ import annotations

import pytest

from crmail.errors import Forbidden
from crmail.storage import actions, outbound
from crmail.storage.crm import get_user as crm_user
from crmail.storage.models import Message
from tests.factories import message
from tests.sync.contract.conftest import Crm, Mailboxes
from tests.sync.contract.drivers import MailboxDriver

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"
Provider = tuple[MailboxDriver, Crm]


async def _contacts_mail(
    server: MailboxDriver, crm: Crm, subject: str, msgid: str
) -> tuple[int, Message]:
    """A known contact's mail delivered to the mailbox and synced in once: the contact's
    id and the stored message (``msgid`` without its angle brackets)."""
    contact = crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, subject, msgid=f"<{msgid}>"))
    await server.sync()
    m = crm.message(msgid)
    assert m is not None
    return contact, m


async def test_contacts_mail_enters_once_and_private_mail_never(provider: Provider) -> None:
    server, crm = provider
    contact = crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Quote", msgid="<c1@client.test>"))
    server.deliver(message("mum@family.test", server.address, "Lunch", msgid="<p1@home.test>"))
    await server.sync()
    await server.sync()
    assert crm.stored() == 1
    assert crm.message("c1@client.test") is not None
    assert crm.message("p1@home.test") is None
    assert crm.on_timeline("c1@client.test", contact)
    assert crm.item("c1@client.test") == ("open", False)
    assert crm.skipped()["no_known_contact"] == 1  # private mail is only counted


async def test_archive_elsewhere_leaves_the_inbox_and_stays_on_the_timeline(
    provider: Provider,
) -> None:
    server, crm = provider
    contact, _ = await _contacts_mail(server, crm, "Done with", "a1@client.test")
    assert crm.item("a1@client.test") == ("open", False)
    server.archive_elsewhere("a1@client.test")
    await server.sync()
    item = crm.item("a1@client.test")
    assert item is not None and item[0] != "open"
    assert crm.on_timeline("a1@client.test", contact)
    assert crm.stored() == 1


async def test_move_elsewhere_leaves_the_inbox_and_stays_on_the_timeline(
    provider: Provider,
) -> None:
    server, crm = provider
    contact, _ = await _contacts_mail(server, crm, "Filed", "m1@client.test")
    assert crm.item("m1@client.test") == ("open", False)
    server.move_elsewhere("m1@client.test", "Projects")
    await server.sync()
    assert not server.in_inbox("m1@client.test")
    item = crm.item("m1@client.test")
    assert item is not None and item[0] != "open"
    assert crm.on_timeline("m1@client.test", contact)
    assert crm.stored() == 1


async def test_delete_elsewhere_leaves_the_inbox_and_stays_on_the_timeline(
    provider: Provider,
) -> None:
    server, crm = provider
    contact, _ = await _contacts_mail(server, crm, "Spam-ish", "x1@client.test")
    assert crm.item("x1@client.test") == ("open", False)
    server.delete_elsewhere("x1@client.test")
    await server.sync()
    item = crm.item("x1@client.test")
    assert item is not None and item[0] != "open"
    assert crm.on_timeline("x1@client.test", contact)
    assert crm.stored() == 1


async def test_read_elsewhere_is_read_in_the_crm(provider: Provider) -> None:
    server, crm = provider
    await _contacts_mail(server, crm, "FYI", "r1@client.test")
    server.read_elsewhere("r1@client.test")
    await server.sync()
    assert crm.item("r1@client.test") == ("open", True)


async def test_done_in_the_crm_archives_and_reads_on_the_server(provider: Provider) -> None:
    server, crm = provider
    _, m = await _contacts_mail(server, crm, "Call me", "d1@client.test")
    u, thread = crm.user(), m.thread_id
    await crm.services.act(lambda s: actions.done(s, u, thread))
    await server.sync()
    assert not server.in_inbox("d1@client.test")
    assert server.is_read("d1@client.test")
    await server.sync()  # what came back from the server keeps it done
    item = crm.item("d1@client.test")
    assert item is not None and item[0] != "open" and item[1]


async def test_read_and_unread_travel_both_ways(provider: Provider) -> None:
    server, crm = provider
    _, m = await _contacts_mail(server, crm, "Note", "rw1@client.test")
    u, thread = crm.user(), m.thread_id
    await crm.services.act(lambda s: actions.set_read(s, u, thread, True))
    await server.sync()
    assert server.is_read("rw1@client.test")
    await server.sync()  # what came back keeps it read: no flip-flop
    assert crm.item("rw1@client.test") == ("open", True)
    server.read_elsewhere("rw1@client.test", read=False)
    await server.sync()
    assert crm.item("rw1@client.test") == ("open", False)
    await crm.services.act(lambda s: actions.set_read(s, u, thread, True))
    await crm.services.act(lambda s: actions.set_read(s, u, thread, False))
    await server.sync()
    await server.sync()
    assert not server.is_read("rw1@client.test")
    assert crm.item("rw1@client.test") == ("open", False)


async def test_done_then_back_in_the_inbox_elsewhere_reopens(provider: Provider) -> None:
    server, crm = provider
    _, m = await _contacts_mail(server, crm, "Again", "b1@client.test")
    u, thread = crm.user(), m.thread_id
    await crm.services.act(lambda s: actions.done(s, u, thread))
    await server.sync()
    await server.sync()
    assert crm.item("b1@client.test") == ("done", True)
    server.to_inbox_elsewhere("b1@client.test")
    await server.sync()
    assert server.in_inbox("b1@client.test")
    item = crm.item("b1@client.test")
    assert item is not None and item[0] == "open"


async def test_delete_in_the_crm_leaves_the_inbox_and_keeps_the_record(
    provider: Provider,
) -> None:
    server, crm = provider
    contact, m = await _contacts_mail(server, crm, "Bin it", "del1@client.test")
    u, mid = crm.user(), m.id
    await crm.services.act(lambda s: actions.delete_message(s, u, mid))
    await server.sync()
    await server.sync()
    assert not server.in_inbox("del1@client.test")
    assert server.copies("del1@client.test") == crm.placements("del1@client.test")
    item = crm.item("del1@client.test")
    assert item is not None and item[0] != "open"
    assert crm.on_timeline("del1@client.test", contact)


async def test_nobody_acts_on_a_coworkers_mail(mailboxes: Mailboxes) -> None:
    world = mailboxes.new_world()
    amy, amy_crm = mailboxes.connect(world, "amy")
    bo, bo_crm = mailboxes.connect(world, "bo")
    outsider = world.user(f"cy-{world.workspace_id}@team.test")  # a teammate without that mail
    world.contact(CUSTOMER)
    raw = message(CUSTOMER, [amy.address, bo.address], "For you both", msgid="<both@client.test>")
    amy.deliver(raw)
    bo.deliver(raw)
    await amy.sync()
    await bo.sync()
    assert amy_crm.stored() == 1  # one stored message, one Inbox item each
    m = amy_crm.message("both@client.test")
    assert m is not None
    thread = m.thread_id
    cy = amy_crm.services.db.run(lambda s: crm_user(s, world.workspace_id, outsider))
    with pytest.raises(Forbidden):
        amy_crm.services.db.run(lambda s: actions.done(s, cy, thread))
    a = amy_crm.user()
    await amy_crm.services.act(lambda s: actions.done(s, a, thread))
    await amy.sync()
    await bo.sync()
    assert not amy.in_inbox("both@client.test") and amy.is_read("both@client.test")
    assert bo.in_inbox("both@client.test") and not bo.is_read("both@client.test")
    assert amy_crm.item("both@client.test") == ("done", True)
    assert bo_crm.item("both@client.test") == ("open", False)


async def test_a_reply_keeps_the_thread_and_leaves_exactly_one_sent_copy(
    mailboxes: Mailboxes,
) -> None:
    world = mailboxes.new_world()
    server, crm = mailboxes.connect(world, sending=True)
    customer = mailboxes.recipient("buyer")
    crm.world.contact(customer)
    server.deliver(message(customer, server.address, "Pricing?", msgid="<ask1@client.test>"))
    await server.sync()
    parent = crm.message("ask1@client.test")
    assert parent is not None
    u, parent_id = crm.user(), parent.id
    reply = await crm.services.act(
        lambda s: outbound.queue_send(
            s, u, outbound.OutgoingDraft(to=(customer,), text="Our prices."), reply_to=parent_id
        )
    )
    assert isinstance(reply, outbound.SendQueued)
    await server.sync()
    await server.sync()  # reads back the provider's Sent copy; nothing goes out twice
    assert server.sent_count() == 1
    assert crm.stored() == 2  # the Sent copy is the message the CRM queued
    sent = crm.services.db.run(lambda s: s.get_one(Message, reply.message_id))
    assert sent.send_state == "sent"
    assert sent.thread_id == parent.thread_id
    assert sent.message_id is not None
    assert crm.placements(sent.message_id) == server.copies(sent.message_id) != []


async def test_a_restarted_sync_imports_nothing_twice(provider: Provider) -> None:
    server, crm = provider
    crm.world.contact(CUSTOMER)
    for i in range(3):
        server.deliver(message(CUSTOMER, server.address, f"n{i}", msgid=f"<rs{i}@client.test>"))
    await server.sync()
    await server.sync()  # a new worker, as after a restart: it resumes from its cursors
    server.deliver(message(CUSTOMER, server.address, "n3", msgid="<rs3@client.test>"))
    server.read_elsewhere("rs0@client.test")
    await server.sync()
    await server.sync()
    assert crm.stored_ids() == [f"rs{i}@client.test" for i in range(4)]
    for i in range(4):
        assert crm.placements(f"rs{i}@client.test") == server.copies(f"rs{i}@client.test")
    assert crm.item("rs0@client.test") == ("open", True)


async def test_done_without_archiving_only_marks_read(mailboxes: Mailboxes) -> None:
    server, crm = mailboxes.connect(mailboxes.new_world(), archive_on_done=False)
    _, m = await _contacts_mail(server, crm, "hi", "na1@client.test")
    u, thread = crm.user(), m.thread_id
    await crm.services.act(lambda s: actions.done(s, u, thread))
    await server.sync()
    await server.sync()  # what came back from the server keeps it done
    assert server.in_inbox("na1@client.test") and server.is_read("na1@client.test")
    assert crm.item("na1@client.test") == ("done", True)
