"""Who sees which message: one rule, one SQL expression, applied inside every read of mail.

A member of a workspace sees a message of that workspace when it is

- on one of the workspace's timelines (linked to a contact, lead or deal), or
- their own mail: a copy (placement) in one of their mail accounts, an item in their
  CRM Inbox (which survives removing the account), or a message they sent from the CRM
  (readable with its send state from the moment it is queued, in every mode).

Anything else is private to its owner, admins included: a teammate's mail that no
record links, whether it never was linked or its owner unlinked it from every record.
The admin role is about managing the workspace, not reading colleagues' mailboxes.

Reading by id, the Inboxes (one's own, a teammate's, everyone's), threads, timelines,
raw bytes, attachments and inline parts all filter with :func:`message_visible` in their
query, so no list or count can show what reading by id answers "not found" for.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Exists,
    SQLColumnExpression,
    and_,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from crmail.storage.models import InboxItem, MailAccount, Message, Placement, TimelineEntry
from crmail.storage.views import UserInfo

# Built once: adapting a fresh alias's columns costs milliseconds per request, more than
# the query. An alias appears once per statement (the rule is applied once per query).
_ALIASES = (
    aliased(Message),
    aliased(TimelineEntry),
    aliased(Placement),
    aliased(MailAccount),
    aliased(InboxItem),
    aliased(Message),
)


def message_visible(
    viewer: UserInfo, message_id: SQLColumnExpression[int] | int
) -> ColumnElement[bool]:
    """SQL: ``viewer`` may see the message whose id is ``message_id``: a column of the
    caller's query (``Message.id``, ``InboxItem.message_id``, ...) or a value.

    Every table inside is aliased and each subquery correlates explicitly to the table of
    ``message_id`` and to nothing else, so a query over timeline entries or Inbox items
    keeps its own rows. The column is required: a default of ``Message.id`` in a query
    not FROM messages would make every subquery uncorrelated ("exists any message sent
    by the viewer"), true for every row, and SQLAlchemy's FROM linter does not see it.
    """
    m, entry, copy, account, item, sent = _ALIASES
    outer = select(message_id).get_final_froms() if not isinstance(message_id, int) else []

    def where(*conditions: ColumnElement[bool]) -> Exists:
        # OFFSET 0 keeps PostgreSQL from turning the EXISTS into a hashed subplan: that
        # reads the whole table (every timeline entry, every item of the viewer) once per
        # statement, chosen when it expects to test many rows and not seeing that a page's
        # LIMIT stops the walk early. Probed per row through its index instead, a page
        # costs what its rows do. SQLite probes per row either way.
        subquery = select(literal_column("*")).where(*conditions).offset(0).exists()
        # For a value, correlate to nothing: no table of an enclosing query may leak in.
        return subquery.correlate(*outer) if outer else subquery.correlate(None)

    in_workspace = where(m.id == message_id, m.workspace_id == viewer.workspace_id)
    on_timeline = where(entry.message_id == message_id)
    own_copy = where(
        copy.message_id == message_id,
        account.id == copy.account_id,
        account.user_id == viewer.id,
    )
    in_own_inbox = where(item.message_id == message_id, item.user_id == viewer.id)
    sent_by_viewer = where(sent.id == message_id, sent.sent_by_user_id == viewer.id)
    return and_(in_workspace, or_(on_timeline, own_copy, in_own_inbox, sent_by_viewer))


def can_see(s: Session, viewer: UserInfo, message_id: int) -> bool:
    return bool(s.scalar(select(message_visible(viewer, message_id))))


def thread_messages(s: Session, viewer: UserInfo, thread_id: int) -> list[int]:
    """The thread's messages ``viewer`` may see, oldest first (empty: the thread is not theirs)."""
    return list(
        s.scalars(
            select(Message.id)
            .where(
                Message.thread_id == thread_id,
                Message.workspace_id == viewer.workspace_id,
                message_visible(viewer, Message.id),
            )
            .order_by(func.coalesce(Message.sent_at, Message.received_at), Message.id)
        )
    )
