"""A disabled user's mailboxes stop: no sync, no queued action runs, no send goes out;
enabled again, everything resumes where it stopped and the queue runs (nothing lost).

Against the real Dovecot and SMTP relay, through the API and the real sync service.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from crmail.services import Services
from crmail.storage import actions, crm, outbound, outbox, users
from crmail.storage.models import MailAccount, Message, OutboxAction
from tests.factories import World
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync import test_lifecycle as lifecycle
from tests.sync.test_inbound import count, server_flags, wait_for
from tests.sync.test_lifecycle import Env, mail_from_ivy
from tests.sync.test_sending import smtp_settings

#: the account life-cycle tests' fixtures: a live account with two messages synced
env = lifecycle.env
world = lifecycle.world


def _admin_headers(env: Env) -> dict[str, str]:
    admin = env.services.db.run(
        lambda s: crm.create_user(s, env.world.workspace_id, "boss@acme.test", role="admin")
    )
    return {"Authorization": f"Bearer {admin.token}"}


def _pending(services: Services) -> int:
    return count(services, OutboxAction, OutboxAction.state == "pending")


async def test_disabled_user_stops_sync_and_queue_until_enabled(
    env: Env, dovecot: Dovecot, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> None:
    env.services.db.run(
        lambda s: setattr(
            s.get_one(MailAccount, env.account),
            "settings",
            {**s.get_one(MailAccount, env.account).settings, **smtp_settings(smtp_relay)},
        )
    )
    await wait_for(lambda: env.account in env.service.running)
    admin = _admin_headers(env)
    r = await asyncio.to_thread(env.client.post, f"/api/users/{env.me}/disable", headers=admin)
    assert r.status_code == 200, r.text
    await wait_for(lambda: env.account not in env.service.running, timeout=5)

    # Work queued for the mailbox the moment before the disable took effect.
    me = env.services.db.run(lambda s: crm.get_user(s, env.world.workspace_id, env.me))
    thread = env.services.db.run(
        lambda s: s.scalar(select(Message.thread_id).where(Message.message_id == "t0@client.test"))
    )
    await env.services.act(lambda s: actions.set_read(s, me, thread, True))
    await env.services.act(
        lambda s: outbound.queue_send(
            s, me, outbound.OutgoingDraft(to=("ivy@client.test",), text="while disabled")
        )
    )
    dovecot.deliver(mailbox.email, mail_from_ivy(mailbox, "while-disabled"))
    await asyncio.sleep(1.0)  # five scans of the service
    assert env.account not in env.service.running
    assert env.messages() == 3  # the two synced, and the queued send; nothing fetched
    assert _pending(env.services) == 2
    assert smtp_relay.accepted == []
    assert "\\Seen" not in server_flags(dovecot, mailbox.email)["<t0@client.test>"]
    # The account itself is untouched (not paused or disconnected): only its owner is off.
    assert env.state() in ("live", "connecting", "importing")

    r = await asyncio.to_thread(env.client.post, f"/api/users/{env.me}/enable", headers=admin)
    assert r.status_code == 200, r.text
    await wait_for(lambda: env.account in env.service.running, timeout=5)
    await env.reach("live")
    await wait_for(lambda: len(smtp_relay.accepted) == 1)
    assert smtp_relay.accepted[0].mail_from == mailbox.email
    await wait_for(lambda: "\\Seen" in server_flags(dovecot, mailbox.email)["<t0@client.test>"])
    await wait_for(lambda: env.messages() == 4)
    await wait_for(lambda: count(env.services, OutboxAction, OutboxAction.state != "done") == 0)
    rows = env.services.db.run(
        lambda s: [tuple(r) for r in s.execute(select(OutboxAction.kind, OutboxAction.state))]
    )
    assert sorted(rows) == [("send", "done"), ("sync", "done")]


def test_shared_queue_skips_a_disabled_users_actions(services: Services, world: World) -> None:
    """The default provider's queue is shared: a disabled user's send waits there, kept,
    while others' go; it is due again once the user is enabled."""
    alice = world.user("alice@acme.test")
    bob = world.user("bob@acme.test")

    def queue(user_id: int) -> int:
        return services.db.run(
            lambda s: outbox.enqueue(
                s,
                workspace_id=world.workspace_id,
                account_id=None,
                user_id=user_id,
                message_id=None,
                kind="send",
                payload={},
            )
        )

    alices, bobs = queue(alice), queue(bob)
    services.db.run(lambda s: users.set_disabled(s, alice, True))
    claimed = services.db.run(lambda s: outbox.claim_next(s, None))
    assert claimed is not None and claimed.id == bobs
    assert services.db.run(lambda s: outbox.claim_next(s, None)) is None
    # Nothing due: the drainer sleeps instead of spinning on the skipped send.
    assert services.db.run(lambda s: outbox.next_due(s, None)) is None

    services.db.run(lambda s: users.set_disabled(s, alice, False))
    assert services.db.run(lambda s: outbox.next_due(s, None)) is not None
    claimed = services.db.run(lambda s: outbox.claim_next(s, None))
    assert claimed is not None and claimed.id == alices
