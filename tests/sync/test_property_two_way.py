"""Property: whatever the CRM and another mail client do, in any order, once sync settles
both sides agree per the two-way rules and nothing is lost.

Hypothesis draws interleavings of CRM actions (Done, read/unread, delete, move to
Archive) and another client's changes (read/unread, archive, move back to INBOX,
delete for good), with sync rounds at random points, against a real Dovecot.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from functools import partial

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmail.services import Services
from crmail.storage import actions, crm
from crmail.storage.models import Folder, InboxItem, Message, Placement, TimelineEntry
from crmail.sync.worker import AccountWorker
from tests.factories import message, new_world
from tests.servers import Dovecot
from tests.sync.test_inbound import FAST

N = 3
SYNCED = {"INBOX", "Sent", "Archive"}
_users = itertools.count(1)

crm_ops = st.one_of(
    st.tuples(st.just("crm_done"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_read"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("crm_delete"), st.integers(0, N - 1)),
    st.tuples(st.just("crm_move_archive"), st.integers(0, N - 1)),
)
client_ops = st.one_of(
    st.tuples(st.just("client_seen"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("client_archive"), st.integers(0, N - 1)),
    st.tuples(st.just("client_to_inbox"), st.integers(0, N - 1)),
    st.tuples(st.just("client_expunge"), st.integers(0, N - 1)),
)
ops = st.lists(st.one_of(crm_ops, client_ops, st.just(("sync",))), min_size=1, max_size=8)


@dataclass
class ServerCopy:
    folder: str
    seen: bool


def server_state(dovecot: Dovecot, user: str) -> dict[str, list[ServerCopy]]:
    out = dovecot.doveadm("fetch", "-u", user, "mailbox hdr.message-id flags", "mailbox", "*")
    state: dict[str, list[ServerCopy]] = {}
    folder = msgid = None
    for line in out.splitlines():
        if line.startswith("mailbox:"):
            folder = line.split(":", 1)[1].strip()
        elif line.lower().startswith("hdr.message-id:"):
            msgid = line.split(":", 1)[1].strip().strip("<>")
        elif line.startswith("flags:") and folder and msgid:
            state.setdefault(msgid, []).append(ServerCopy(folder, "\\Seen" in line))
            folder = msgid = None
    return state


def client_change(dovecot: Dovecot, user: str, op: tuple[object, ...], ids: list[str]) -> None:
    kind, i = op[0], int(str(op[1]))
    query = ["header", "Message-ID", f"<{ids[i]}>"]
    if kind == "client_seen":
        verb = "add" if op[2] else "remove"
        dovecot.doveadm("flags", verb, "-u", user, "\\Seen", "mailbox", "*", *query)
    elif kind == "client_archive":
        dovecot.doveadm("move", "-u", user, "Archive", "mailbox", "INBOX", *query)
    elif kind == "client_to_inbox":
        dovecot.doveadm("move", "-u", user, "INBOX", "mailbox", "Archive", *query)
    elif kind == "client_expunge":
        dovecot.doveadm("expunge", "-u", user, "mailbox", "*", *query)


@settings(
    max_examples=int(os.environ.get("CRMAIL_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=ops)
def test_both_sides_agree_after_any_interleaving(
    services: Services, dovecot: Dovecot, script: list[tuple[object, ...]]
) -> None:
    asyncio.run(_run(services, dovecot, script))


async def _run(services: Services, dovecot: Dovecot, script: list[tuple[object, ...]]) -> None:
    n = next(_users)
    box = dovecot.add_user(f"prop{n}@team.test", f"pw-prop-{n}")
    world = new_world(services)
    me = world.user(box.email)
    world.contact(f"client{n}@client.test")
    account = world.connect(me, box)
    ids = [f"p{n}-{i}@client.test" for i in range(N)]
    for i, mid in enumerate(ids):
        dovecot.deliver(
            box.email, message(f"client{n}@client.test", box.email, f"topic {i}", msgid=f"<{mid}>")
        )

    async def sync() -> None:
        await AccountWorker(services.db, services.box, account, FAST).run_once()

    await sync()
    user = services.db.run(lambda s: crm.get_user(s, world.workspace_id, me))

    def message_id(i: int) -> int:
        return services.db.run(
            lambda s: s.scalar(select(Message.id).where(Message.message_id == ids[i]))
        )

    def thread_id(i: int) -> int:
        return services.db.run(
            lambda s: s.scalar(select(Message.thread_id).where(Message.message_id == ids[i]))
        )

    for op in script:
        kind = op[0]
        if kind == "sync":
            await sync()
        elif str(kind).startswith("client_"):
            client_change(dovecot, box.email, op, ids)
        else:
            i = int(str(op[1]))
            tid, mid = thread_id(i), message_id(i)
            try:
                if kind == "crm_done":
                    services.db.run(partial(actions.done, user=user, thread_id=tid))
                elif kind == "crm_read":
                    read = bool(op[2])
                    services.db.run(partial(actions.set_read, user=user, thread_id=tid, read=read))
                elif kind == "crm_delete":
                    services.db.run(partial(actions.delete_message, user=user, message_id=mid))
                elif kind == "crm_move_archive":
                    services.db.run(
                        partial(actions.move_message, user=user, message_id=mid, folder="Archive")
                    )
            except Exception as exc:  # the CRM refuses actions on mail no longer in the mailbox
                from crmail.errors import CrmailError

                assert isinstance(exc, CrmailError), exc
    # let everything settle: drain queued actions, then sync what they changed
    await sync()
    await sync()

    # Nothing lost, nothing doubled: every message is still in the CRM, once, on its timeline.
    stored = services.db.run(
        lambda s: list(
            s.scalars(select(Message.message_id).where(Message.workspace_id == world.workspace_id))
        )
    )
    assert sorted(stored) == sorted(ids)
    linked = services.db.run(
        lambda s: s.scalar(
            select(TimelineEntry.id.is_not(None))
            .where(TimelineEntry.workspace_id == world.workspace_id)
            .limit(1)
        )
    )
    assert linked

    server = server_state(dovecot, box.email)
    placements = services.db.run(
        lambda s: s.execute(
            select(Message.message_id, Folder.name, Placement.flags)
            .join(Placement, Placement.message_id == Message.id)
            .join(Folder, Folder.id == Placement.folder_id)
            .where(Folder.account_id == account)
        ).all()
    )
    items = dict(
        services.db.run(
            lambda s: s.execute(
                select(Message.message_id, InboxItem.state)
                .join(InboxItem, InboxItem.message_id == Message.id)
                .where(InboxItem.user_id == me)
            ).all()
        )
    )
    reads = dict(
        services.db.run(
            lambda s: s.execute(
                select(Message.message_id, InboxItem.is_read)
                .join(InboxItem, InboxItem.message_id == Message.id)
                .where(InboxItem.user_id == me)
            ).all()
        )
    )
    for mid in ids:
        copies = [c for c in server.get(mid, []) if c.folder in SYNCED]
        # The CRM knows where the message is on the server, and with which read state.
        known = sorted((folder, "\\Seen" in flags) for m, folder, flags in placements if m == mid)
        assert known == sorted((c.folder, c.seen) for c in copies), (mid, script)
        in_inbox = [c for c in copies if c.folder == "INBOX"]
        state = items.get(mid)
        # The CRM Inbox shows exactly what is still in the mailbox INBOX.
        if in_inbox:
            assert state == "open", (mid, state, script)
            assert reads[mid] == any(c.seen for c in in_inbox), (mid, script)
        else:
            assert state in ("archived", "done"), (mid, state, script)
        # Done in the CRM is out of INBOX on the server (moved back: reopened, see above).
        if state == "done":
            assert not in_inbox, (mid, script)
