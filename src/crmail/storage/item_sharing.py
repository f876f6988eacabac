"""Which Inbox items someone besides their owner may see: ``inbox_items.shared``.

A teammate's (and everyone's) Inbox reads the owner's shared items in index order and
applies the visibility rule to them (``storage/visibility.py``); private items are
never read. So the flag must be true whenever a member other than the owner may see
the message: it is on a timeline, or it is in their own mail (a copy in one of their
accounts, an item in their Inbox, or they sent it from the CRM).

Every change that can make a message visible to another member recomputes the flag of
all the message's items in the same transaction: a sync step (new messages and their
links, new copies, new items: :func:`crmail.storage.mail.apply_step`), and a link or
unlink by hand (``storage/links.py``). Changes that only take visibility away (a copy
moved or deleted, an account removed) may leave it true: a shared item that is no
longer visible to a viewer is dropped by the rule, never shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import Session, aliased

from crmail.storage.models import InboxItem, MailAccount, Message, Placement, TimelineEntry

_other_item = aliased(InboxItem)

#: SQL: someone besides the owner of the (outer) Inbox item may see its message
SHARED = or_(
    exists().where(TimelineEntry.message_id == InboxItem.message_id),
    exists().where(
        _other_item.message_id == InboxItem.message_id,
        _other_item.user_id != InboxItem.user_id,
    ),
    exists().where(
        Placement.message_id == InboxItem.message_id,
        MailAccount.id == Placement.account_id,
        MailAccount.user_id != InboxItem.user_id,
    ),
    exists().where(
        Message.id == InboxItem.message_id,
        and_(Message.sent_by_user_id.is_not(None), Message.sent_by_user_id != InboxItem.user_id),
    ),
)

_CHUNK = 500


def refresh(s: Session, message_ids: Iterable[int]) -> None:
    """Recompute ``shared`` on every Inbox item of these messages (one UPDATE per 500)."""
    ids = sorted(set(message_ids))
    for i in range(0, len(ids), _CHUNK):
        s.execute(
            update(InboxItem)
            # Only rows whose flag changes: no write (nor updated_at) for the others.
            .where(InboxItem.message_id.in_(ids[i : i + _CHUNK]), InboxItem.shared != SHARED)
            .values(shared=SHARED, updated_at=InboxItem.updated_at)
            .execution_options(synchronize_session=False)
        )
