"""The two-way sync's promises, run against every provider (Dovecot over IMAP, the fake
Gmail over the Gmail API, the fake Graph over Microsoft Graph): what enters, what changes
elsewhere, what the CRM changes."""

from __future__ import annotations

import pytest

from crmail.storage import actions
from tests.factories import message
from tests.sync.contract.conftest import Crm, MailboxDriver

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"
Provider = tuple[MailboxDriver, Crm]


async def test_contacts_mail_enters_once_and_private_mail_never(provider: Provider) -> None:
    server, crm = provider
    crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Quote", msgid="<c1@client.test>"))
    server.deliver(message("mum@family.test", server.address, "Lunch", msgid="<p1@home.test>"))
    await server.sync()
    await server.sync()
    assert crm.stored() == 1
    assert crm.message("c1@client.test") is not None
    assert crm.message("p1@home.test") is None
    assert crm.item("c1@client.test") == ("open", False)


async def test_archive_elsewhere_leaves_the_inbox_and_stays_on_the_timeline(
    provider: Provider,
) -> None:
    server, crm = provider
    contact = crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Done with", msgid="<a1@client.test>"))
    await server.sync()
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
    contact = crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Filed", msgid="<m1@client.test>"))
    await server.sync()
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
    contact = crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Spam-ish", msgid="<x1@client.test>"))
    await server.sync()
    assert crm.item("x1@client.test") == ("open", False)
    server.delete_elsewhere("x1@client.test")
    await server.sync()
    item = crm.item("x1@client.test")
    assert item is not None and item[0] != "open"
    assert crm.on_timeline("x1@client.test", contact)
    assert crm.stored() == 1


async def test_read_elsewhere_is_read_in_the_crm(provider: Provider) -> None:
    server, crm = provider
    crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "FYI", msgid="<r1@client.test>"))
    await server.sync()
    server.read_elsewhere("r1@client.test")
    await server.sync()
    assert crm.item("r1@client.test") == ("open", True)


async def test_done_in_the_crm_archives_and_reads_on_the_server(provider: Provider) -> None:
    server, crm = provider
    crm.world.contact(CUSTOMER)
    server.deliver(message(CUSTOMER, server.address, "Call me", msgid="<d1@client.test>"))
    await server.sync()
    m = crm.message("d1@client.test")
    assert m is not None
    u, thread = crm.user(), m.thread_id
    await crm.services.act(lambda s: actions.done(s, u, thread))
    await server.sync()
    assert not server.in_inbox("d1@client.test")
    assert server.is_read("d1@client.test")
    await server.sync()  # what came back from the server keeps it done
    item = crm.item("d1@client.test")
    assert item is not None and item[0] != "open" and item[1]
