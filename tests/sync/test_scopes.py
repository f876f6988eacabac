"""Scope "crm_threads" on IMAP when the connected address changes (HighLevel, seeds
001/002). The scopes, 1-way mode and auto-create rules themselves are proven on every
provider by the contract in tests/sync/contract/test_scope_contract.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.services import Services
from crmail.storage import accounts, outbound
from crmail.storage.models import (
    Message,
    TimelineEntry,
)
from crmail.sync.worker import AccountWorker
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST
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


async def test_crm_threads_follow_the_connected_address_when_it_changes(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    customer = dovecot.add_user("ct-buyer@client.test", "pw-ct-buyer")
    me = world.user(mailbox.email)
    world.contact(customer.email)
    account = world.connect(me, mailbox, scope="crm_threads", **smtp_settings(smtp_relay))
    u = user(services, world, me)
    draft = outbound.OutgoingDraft(to=(customer.email,), subject="Proposal", text="Here it is.")
    q = await services.act(lambda s: outbound.queue_send(s, u, draft))
    assert isinstance(q, outbound.SendQueued)
    await sync_once(services, account)
    crm_msgid = header_of(services, q.message_id)
    assert send_state(services, q.message_id) == ("sent", None)

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
