"""Property, on every provider: whatever the CRM and another mail client do, in any
order, once sync settles both sides agree per the two-way rules and nothing is lost.

Hypothesis draws interleavings of CRM actions (Done, read/unread, delete, move to the
archive folder) and another client's changes (read/unread, archive, back to the Inbox,
trash, delete for good), with sync rounds at random points, against Dovecot, the fake
Gmail and the fake Graph. ``CRMAIL_PROPERTY_EXAMPLES`` sets the examples per provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from functools import partial

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmail.errors import CrmailError
from crmail.storage import actions
from tests.factories import message
from tests.sync.contract.conftest import Mailboxes
from tests.sync.contract.drivers import MailboxDriver

N = 3
Op = tuple[object, ...]

crm_ops = st.one_of(
    st.tuples(st.just("crm_done"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_read"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("crm_delete"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_move_archive"), st.integers(0, N - 1)),
)
client_ops = st.one_of(
    st.tuples(st.just("client_read"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("client_archive"), st.integers(0, N - 1)),
    st.tuples(st.just("client_to_inbox"), st.integers(0, N - 1)),
    st.tuples(st.just("client_trash"), st.integers(0, N - 1)),
    st.tuples(st.just("client_delete"), st.integers(0, N - 1)),
)
ops = st.lists(st.one_of(crm_ops, client_ops, st.just(("sync",))), min_size=1, max_size=8)


def client_change(server: MailboxDriver, op: Op, msgid: str) -> None:
    kind = op[0]
    if kind == "client_read":
        server.read_elsewhere(msgid, read=bool(op[2]))
    elif kind == "client_archive":
        server.archive_elsewhere(msgid)
    elif kind == "client_to_inbox":
        server.to_inbox_elsewhere(msgid)
    elif kind == "client_trash":
        server.trash_elsewhere(msgid)
    elif kind == "client_delete":
        server.delete_elsewhere(msgid)


@settings(
    max_examples=int(os.environ.get("CRMAIL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=ops)
def test_both_sides_agree_after_any_interleaving(mailboxes: Mailboxes, script: list[Op]) -> None:
    asyncio.run(_run(mailboxes, script))


async def _run(mailboxes: Mailboxes, script: list[Op]) -> None:
    world = mailboxes.new_world()
    server, crm = mailboxes.connect(world, "prop")
    customer = f"client-{world.workspace_id}@client.test"
    world.contact(customer)
    ids = [f"p{world.workspace_id}-{i}@client.test" for i in range(N)]
    for i, mid in enumerate(ids):
        server.deliver(message(customer, server.address, f"topic {i}", msgid=f"<{mid}>"))
    await server.sync()
    user = crm.user()

    for op in script:
        kind = str(op[0])
        if kind == "sync":
            await server.sync()
        elif kind.startswith("client_"):
            client_change(server, op, ids[int(str(op[1]))])
        else:
            m = crm.message(ids[int(str(op[1]))])
            assert m is not None
            act = {
                "crm_done": partial(actions.done, user=user, thread_id=m.thread_id),
                "crm_read": partial(
                    actions.set_read, user=user, thread_id=m.thread_id, read=bool(op[-1])
                ),
                "crm_delete": partial(actions.delete_message, user=user, message_id=m.id),
                "crm_move_archive": partial(
                    actions.move_message, user=user, message_id=m.id, folder=server.archive_folder
                ),
            }[kind]
            # the CRM refuses actions on mail no longer in the mailbox
            with contextlib.suppress(CrmailError):
                crm.services.db.run(act)
    await server.sync()  # drains what the CRM queued
    await server.sync()  # and reads back what it changed

    assert crm.stored_ids() == sorted(ids), script  # nothing lost, nothing twice
    for mid in ids:
        assert crm.links(mid), (mid, script)  # every message stays on the timeline
        copies = server.copies(mid)
        # The CRM knows which synced folders hold the message, and its read state.
        assert crm.placements(mid) == copies, (mid, script)
        item = crm.item(mid)
        assert item is not None, (mid, script)
        state, read = item
        # The CRM Inbox shows exactly what is still in the mailbox's Inbox.
        if server.in_inbox(mid):
            assert state == "open", (mid, item, script)
            assert read == server.is_read(mid), (mid, item, script)
        else:
            assert state in ("archived", "done"), (mid, item, script)
