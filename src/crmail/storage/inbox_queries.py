"""A user's CRM Inbox as a list: open items, newest first, paged by keyset.

"In the Inbox" is ``open``, or ``snoozed`` with its time come (the waker may not have
run yet). One query with that OR cannot be read in index order, so each is its own
query and the two are merged here:

- open items in the order of the (user, state, received_at, id) index, entered at the
  cursor: a short index range read whatever the Inbox's size and the page's depth;
- due snoozed items found by their time on (user, state, snooze_until): the few the
  waker has not reopened yet, cursor and order applied in Python. Read in received_at
  order instead, every snoozed item of the user would be walked to find the due ones.

A teammate's Inbox reads only the owner's ``shared`` items (on a timeline or in another
member's mail, ``storage/item_sharing.py``) through (user, state, shared, received_at,
id), then applies the visibility rule to them: the owner's private mail is never read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, Select, select, true
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


#: what a page needs of an item: columns, not entities (an entity per row cost more than
#: the page's SQL)
_ITEM_COLUMNS = (
    InboxItem.id,
    InboxItem.message_id,
    InboxItem.is_read,
    InboxItem.state,
    InboxItem.received_at,
)


def _inbox(
    s: Session,
    viewer: UserInfo,
    user_id: int,
    limit: int,
    before: str | None,
    include_read: bool,
) -> Page[InboxEntry]:
    n = paging.clamp(limit)
    open_items = select(*_ITEM_COLUMNS).where(
        InboxItem.user_id == user_id, InboxItem.state == ItemState.OPEN.value
    )
    due = select(*_ITEM_COLUMNS).where(
        InboxItem.user_id == user_id,
        InboxItem.state == ItemState.SNOOZED.value,
        InboxItem.snooze_until <= utcnow(),
    )
    if user_id != viewer.id:
        # Only items others may see, read in (user, shared, state, received_at) order:
        # the owner's private mail is never read, however much of it there is; then the
        # rule, in the query (pages, cursors and counts see only visible items).
        # One's own items are visible by the rule's "in their own Inbox": no test needed,
        # and PostgreSQL would hash every item of the viewer to run it.
        seen = (
            InboxItem.shared == true(),
            visibility.message_visible(viewer, InboxItem.message_id),
        )
        open_items = open_items.where(*seen)
        due = due.where(*seen)
    rows = _page_of(s, open_items, n, before, include_read)
    # The due ones by their time alone (no received_at order to tempt the planner onto
    # the other index): few, since the waker reopens them; cursor and order applied here.
    if not include_read:
        due = due.where(InboxItem.is_read.is_(False))
    after = paging.decode_cursor(before) if before is not None else None
    rows += [i for i in s.execute(due) if after is None or (i.received_at, i.id) < after]
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


def _page_of(
    s: Session,
    q: Select[int, int, bool, str, datetime],
    n: int,
    before: str | None,
    include_read: bool,
) -> list[Row[int, int, bool, str, datetime]]:
    """At most a page (+1) of ``q``'s items, newest first, after the cursor."""
    if not include_read:
        q = q.where(InboxItem.is_read.is_(False))
    cond = paging.older_than(InboxItem.received_at, InboxItem.id, before)
    if cond is not None:
        q = q.where(cond)
    order = (InboxItem.received_at.desc(), InboxItem.id.desc())
    return list(s.execute(q.order_by(*order).limit(n + 1)))
