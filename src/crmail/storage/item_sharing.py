"""Which Inbox items someone besides their owner may see: ``inbox_items.shared``.

A teammate's (and everyone's) Inbox reads the owner's shared items in index order and
applies the visibility rule to them (``storage/visibility.py``); private items are
never read. So the flag must be true whenever a member other than the owner may see
the message: it is on a timeline, or it is in their own mail (a copy in one of their
accounts, an item in their Inbox, or they sent it from the CRM).

Every change that can make a message visible to another member recomputes the flag of
all the message's items in the same transaction: a sync step (new copies and items of
known messages: :func:`crmail.storage.mail.apply_step`; a message the step stores gets
its flag with its item, true if the step links it, as it has no other copy or item yet),
and a link or unlink by hand (``storage/links.py``). Changes that only take visibility away (a copy
moved or deleted, an account removed) may leave it true: a shared item that is no
longer visible to a viewer is dropped by the rule, never shown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from crmail.storage.models import InboxItem, MailAccount, Message, Placement, TimelineEntry

_CHUNK = 500


def refresh(s: Session, message_ids: Iterable[int]) -> None:
    """Recompute ``shared`` on every Inbox item of these messages.

    Each read goes through a ``message_id`` index and reads only the batch's rows (a
    correlated UPDATE let PostgreSQL hash all of ``timeline_entries`` per batch, a cost
    that grew with the workspace); only items whose flag changes are written.
    """
    ids = sorted(set(message_ids))
    for i in range(0, len(ids), _CHUNK):
        _refresh_chunk(s, ids[i : i + _CHUNK])


def _refresh_chunk(s: Session, ids: list[int]) -> None:
    items = s.execute(
        select(InboxItem.id, InboxItem.message_id, InboxItem.user_id, InboxItem.shared).where(
            InboxItem.message_id.in_(ids)
        )
    ).all()
    if not items:
        return
    with_items = sorted({row.message_id for row in items})
    on_timeline = set(
        s.scalars(select(TimelineEntry.message_id).where(TimelineEntry.message_id.in_(with_items)))
    )
    # who may see each message besides a timeline: item owners, copy owners, the sender
    seen_by: dict[int, set[int]] = defaultdict(set)
    for row in items:
        seen_by[row.message_id].add(row.user_id)
    copies = s.execute(
        select(Placement.message_id, MailAccount.user_id)
        .join(MailAccount, MailAccount.id == Placement.account_id)
        .where(Placement.message_id.in_(with_items))
    )
    for message_id, user_id in copies:
        seen_by[message_id].add(user_id)
    senders = s.execute(
        select(Message.id, Message.sent_by_user_id).where(
            Message.id.in_(with_items), Message.sent_by_user_id.is_not(None)
        )
    )
    for message_id, sender in senders:
        if sender is not None:
            seen_by[message_id].add(sender)
    changed = [
        {"item": row.id, "flag": flag}
        for row in items
        if (flag := row.message_id in on_timeline or bool(seen_by[row.message_id] - {row.user_id}))
        != row.shared
    ]
    if changed:
        table = InboxItem.__table__
        assert isinstance(table, Table)
        # Core executemany (pipelined on PostgreSQL); updated_at kept: a flag is no edit.
        s.connection().execute(
            update(table)
            .where(table.c.id == bindparam("item"))
            .values(shared=bindparam("flag"), updated_at=table.c.updated_at),
            changed,
        )
