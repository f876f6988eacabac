"""Property, on the Gmail API: whatever the CRM and Gmail's own clients do, in any
order, once sync settles both sides agree per the two-way rules and nothing is lost
(the IMAP twin is tests/sync/test_property_two_way.py, against Dovecot).

Hypothesis draws interleavings of CRM actions (Done, read/unread, delete, move to All
Mail) and changes made in Gmail (read/unread, archive, back to the Inbox, trash,
delete for good), with sync rounds at random points, against the fake Gmail.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from functools import partial

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmail.errors import CrmailError
from crmail.services import Services
from crmail.storage import actions, crm
from crmail.storage.models import Folder, InboxItem, Message, Placement
from crmail.sync.gmail.labels import OUTSIDE
from crmail.sync.gmail.worker import GmailWorker
from tests.factories import message, new_world
from tests.fakes.gmail import FakeGmail, GmailHTTPError, Mailbox
from tests.sync.api_fixtures import connect_api_account
from tests.sync.gmail.conftest import gmail_options

N = 3
_users = itertools.count(1)

crm_ops = st.one_of(
    st.tuples(st.just("crm_done"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_read"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("crm_delete"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_move_archive"), st.integers(0, N - 1)),
)
gmail_ops = st.one_of(
    st.tuples(st.just("gmail_read"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("gmail_archive"), st.integers(0, N - 1)),
    st.tuples(st.just("gmail_to_inbox"), st.integers(0, N - 1)),
    st.tuples(st.just("gmail_trash"), st.integers(0, N - 1)),
    st.tuples(st.just("gmail_delete"), st.integers(0, N - 1)),
)
ops = st.lists(st.one_of(crm_ops, gmail_ops, st.just(("sync",))), min_size=1, max_size=8)


def gmail_change(box: Mailbox, op: tuple[object, ...], gids: list[str]) -> None:
    kind, gid = op[0], gids[int(str(op[1]))]
    try:
        if kind == "gmail_read":
            if op[2]:
                box.modify(gid, remove=("UNREAD",))
            else:
                box.modify(gid, add=("UNREAD",))
        elif kind == "gmail_archive":
            box.modify(gid, remove=("INBOX",))
        elif kind == "gmail_to_inbox":
            box.modify(gid, add=("INBOX",))
        elif kind == "gmail_trash":
            box.trash(gid)
        elif kind == "gmail_delete":
            box.delete(gid)
    except GmailHTTPError as exc:
        assert exc.status == 404  # deleted for good earlier in the script


@settings(
    max_examples=int(os.environ.get("CRMAIL_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=ops)
def test_both_sides_agree_after_any_interleaving_on_gmail(
    services: Services, gmail_fake: tuple[FakeGmail, str], script: list[tuple[object, ...]]
) -> None:
    asyncio.run(_run(services, gmail_fake, script))


async def _run(
    services: Services, gmail_fake: tuple[FakeGmail, str], script: list[tuple[object, ...]]
) -> None:
    fake, url = gmail_fake
    fake.faults.clear()
    n = next(_users)
    address, token = f"prop{n}@gmail.test", f"prop-token-{n}"
    box = fake.add_mailbox(address, token=token)
    world = new_world(services)
    me = world.user(address)
    world.contact(f"client{n}@client.test")
    account = connect_api_account(services, world, me, address, token, "gmail")
    ids = [f"g{n}-{i}@client.test" for i in range(N)]
    gids = [
        box.deliver(message(f"client{n}@client.test", address, f"topic {i}", msgid=f"<{mid}>")).id
        for i, mid in enumerate(ids)
    ]

    async def sync() -> None:
        await GmailWorker(services.db, services.box, account, gmail_options(url)).run_once()

    await sync()
    user = services.db.run(lambda s: crm.get_user(s, world.workspace_id, me))

    def stored(i: int) -> Message:
        return services.db.run(
            lambda s: s.scalar(select(Message).where(Message.message_id == ids[i]))
        )

    for op in script:
        kind = op[0]
        if kind == "sync":
            await sync()
        elif str(kind).startswith("gmail_"):
            gmail_change(box, op, gids)
        else:
            m = stored(int(str(op[1])))
            try:
                if kind == "crm_done":
                    services.db.run(partial(actions.done, user=user, thread_id=m.thread_id))
                elif kind == "crm_read":
                    read = bool(op[2])
                    services.db.run(
                        partial(actions.set_read, user=user, thread_id=m.thread_id, read=read)
                    )
                elif kind == "crm_delete":
                    services.db.run(partial(actions.delete_message, user=user, message_id=m.id))
                elif kind == "crm_move_archive":
                    services.db.run(
                        partial(actions.move_message, user=user, message_id=m.id, folder="All Mail")
                    )
            except CrmailError:
                pass  # the CRM refuses actions on mail no longer in the mailbox
    await sync()  # drains what the CRM queued
    await sync()  # and reads back what it changed

    everything = services.db.run(
        lambda s: sorted(
            s.scalars(select(Message.message_id).where(Message.workspace_id == world.workspace_id))
        )
    )
    assert everything == sorted(ids), script  # nothing lost, nothing twice
    placements = services.db.run(
        lambda s: s.execute(
            select(Message.message_id, Folder.name, Placement.flags)
            .join(Placement, Placement.message_id == Message.id)
            .join(Folder, Folder.id == Placement.folder_id)
            .where(Folder.account_id == account)
        ).all()
    )
    items = {
        mid: (state, read)
        for mid, state, read in services.db.run(
            lambda s: s.execute(
                select(Message.message_id, InboxItem.state, InboxItem.is_read)
                .join(InboxItem, InboxItem.message_id == Message.id)
                .where(InboxItem.user_id == me)
            ).all()
        )
    }
    for mid, gid in zip(ids, gids, strict=True):
        msg = box.messages.get(gid)
        labels = set() if msg is None else msg.labels
        seen = "UNREAD" not in labels
        if msg is None or labels & OUTSIDE:
            expected: list[tuple[str, bool]] = []
        else:
            expected = [("All Mail", seen)] + [("INBOX", seen)] * ("INBOX" in labels)
        # The CRM knows which folders hold the message in Gmail, and its read state.
        known = sorted((folder, "\\Seen" in flags) for m, folder, flags in placements if m == mid)
        assert known == sorted(expected), (mid, labels, script)
        in_inbox = any(folder == "INBOX" for folder, _ in expected)
        state, read = items.get(mid, (None, None))
        # The CRM Inbox shows exactly what is still in the Gmail Inbox.
        if in_inbox:
            assert state == "open" and read == seen, (mid, state, read, labels, script)
        else:
            assert state in ("archived", "done"), (mid, state, labels, script)
