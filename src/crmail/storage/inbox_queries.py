"""A user's CRM Inbox as a list: open items, newest first, paged by keyset.

"In the Inbox" is ``open``, or ``snoozed`` with its time come (the waker may not have
run yet). One query with that OR cannot be read in index order, so each state is its
own query in the order of the (user, state, received_at, id) index, at most a page long,
and the two are merged here: two short index range reads instead of sorting the whole
Inbox, whatever its size and however deep the page.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.domain.inbox import ItemState
from crmail.errors import NotFound
from crmail.storage import outbox, paging, visibility
from crmail.storage.message_reads import summaries
from crmail.storage.models import InboxItem, User, utcnow
from crmail.storage.views import InboxEntry, Page, UserInfo


def inbox_for(
    s: Session,
    viewer: UserInfo,
    user_id: int,
    limit: int = 50,
    before: str | None = None,
    include_read: bool = True,
) -> Page[InboxEntry]:
    """A user's Inbox as ``viewer`` may see it: their own, or a teammate's (same workspace).

    A teammate's Inbox lists only what the viewer may read by id: mail on the
    workspace's timelines, or that reached the viewer too; private mail stays out.
    """
    if user_id != viewer.id:
        owner = s.scalar(
            select(User.id).where(User.id == user_id, User.workspace_id == viewer.workspace_id)
        )
        if owner is None:
            raise NotFound(f"user {user_id} not found")
    return _inbox(s, viewer, user_id, limit, before, include_read)


def _inbox(
    s: Session,
    viewer: UserInfo,
    user_id: int,
    limit: int,
    before: str | None,
    include_read: bool,
) -> Page[InboxEntry]:
    n = paging.clamp(limit)
    now = utcnow()
    rows: list[InboxItem] = []
    for state in (ItemState.OPEN, ItemState.SNOOZED):
        q = select(InboxItem).where(
            InboxItem.user_id == user_id,
            InboxItem.state == state.value,
            # In the query, not after it: pages, cursors and counts see only visible items.
            visibility.message_visible(viewer, InboxItem.message_id),
        )
        if state is ItemState.SNOOZED:
            q = q.where(InboxItem.snooze_until <= now)
        if not include_read:
            q = q.where(InboxItem.is_read.is_(False))
        cond = paging.older_than(InboxItem.received_at, InboxItem.id, before)
        if cond is not None:
            q = q.where(cond)
        order = (InboxItem.received_at.desc(), InboxItem.id.desc())
        rows.extend(s.scalars(q.order_by(*order).limit(n + 1)))
    rows.sort(key=lambda i: (i.received_at, i.id), reverse=True)
    page = rows[:n]
    found = summaries(s, viewer.workspace_id, [i.message_id for i in page])
    errors = outbox.sync_errors(s, user_id, [i.message_id for i in page])
    items = tuple(
        InboxEntry(
            i.id,
            found[i.message_id],
            i.is_read,
            i.state,
            i.received_at,
            errors.get(i.message_id),
        )
        for i in page
    )
    nxt = paging.encode_cursor(page[-1].received_at, page[-1].id) if len(rows) > n else None
    return Page(items, nxt)
