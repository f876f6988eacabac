"""Webhook events of the mail life cycle, emitted where the change is written.

Every function runs in the caller's transaction and goes through
:func:`crmail.storage.events.emit` (the transactional outbox): an event exists exactly
when the change it describes committed. Payloads carry ids and a few small fields,
never bodies; a receiver fetches the rest through the API. ``docs/webhooks.md``
documents each payload: change both together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.storage import events
from crmail.storage.models import InboxItem, Message, TimelineEntry, WebhookEndpoint

_CACHE_KEY = "crmail.webhook_endpoints"


def wants(s: Session, workspace_id: int, type: str) -> bool:
    """Does any active endpoint of the workspace subscribe to ``type``?

    Checked before building payloads, so a sync step in a workspace without webhooks
    costs one query, not one per message. The answer is cached on the session: a
    session is one transaction here (``Database.run``), and no transaction both
    changes endpoints and syncs mail.
    """
    cache: dict[int, list[list[str]]] = s.info.setdefault(_CACHE_KEY, {})
    if workspace_id not in cache:
        cache[workspace_id] = [
            list(events or ())
            for events in s.scalars(
                select(WebhookEndpoint.events).where(
                    WebhookEndpoint.workspace_id == workspace_id,
                    WebhookEndpoint.active.is_(True),
                )
            )
        ]
    return any(not events or type in events for events in cache[workspace_id])


def emit(s: Session, workspace_id: int, type: str, payload: dict[str, object]) -> None:
    if not wants(s, workspace_id, type):
        return
    events.emit(s, workspace_id, type, payload)


# --- message.* ------------------------------------------------------------------------------


def messages_received(
    s: Session, workspace_id: int, account_id: int, folder: str, message_ids: Iterable[int]
) -> None:
    """``message.received``: messages a mailbox sync stored for the first time."""
    ids = sorted(message_ids)
    if not ids or not wants(s, workspace_id, "message.received"):
        return
    rows = s.execute(
        select(Message.id, Message.thread_id, Message.subject, Message.from_email)
        .where(Message.id.in_(ids))
        .order_by(Message.id)
    ).all()
    for mid, tid, subject, sender in rows:
        emit(
            s,
            workspace_id,
            "message.received",
            {
                "message_id": mid,
                "thread_id": tid,
                "account_id": account_id,
                "folder": folder,
                # Subjects can be long; a receiver wanting all of it asks the API.
                "subject": (subject or "")[:200],
                "from": sender,
            },
        )


def links_created(s: Session, workspace_id: int, message_ids: Iterable[int]) -> None:
    """``message.linked`` for the automatic links of newly stored messages."""
    ids = sorted(message_ids)
    if not ids or not wants(s, workspace_id, "message.linked"):
        return
    rows = s.scalars(
        select(TimelineEntry).where(TimelineEntry.message_id.in_(ids)).order_by(TimelineEntry.id)
    )
    for entry in rows:
        linked(s, entry)


def linked(s: Session, entry: TimelineEntry) -> None:
    emit(
        s,
        entry.workspace_id,
        "message.linked",
        {
            "message_id": entry.message_id,
            "subject_type": entry.subject_type,
            "subject_id": entry.subject_id,
            "reason": entry.reason,
            "source": entry.source or "auto",
            "linked_by": entry.created_by,
        },
    )


def skipped(
    s: Session, workspace_id: int, account_id: int, folder: str, counts: dict[str, int]
) -> None:
    """``message.skipped``: one event per reason per sync step, not one per message."""
    for reason, n in sorted(counts.items()):
        if n > 0:
            emit(
                s,
                workspace_id,
                "message.skipped",
                {"account_id": account_id, "folder": folder, "reason": reason, "count": n},
            )


def send_result(s: Session, message_id: int) -> None:
    """``message.sent`` / ``message.send_failed`` from the message's current send state."""
    # Columns, not s.get(): the state was just written with a bulk UPDATE.
    row = s.execute(
        select(
            Message.workspace_id,
            Message.thread_id,
            Message.crm_account_id,
            Message.crm_from,
            Message.send_state,
            Message.send_error,
        ).where(Message.id == message_id)
    ).one_or_none()
    if row is None or row.send_state not in ("sent", "failed", "unknown"):
        return
    payload: dict[str, Any] = {
        "message_id": message_id,
        "thread_id": row.thread_id,
        "account_id": row.crm_account_id,
        "from": row.crm_from,
        "state": row.send_state,
    }
    if row.send_state == "sent":
        # On "sent", send_error lists refused recipients (a partial delivery).
        payload["refused"] = row.send_error
        emit(s, row.workspace_id, "message.sent", payload)
    else:
        payload["error"] = (row.send_error or "")[:500] or None
        emit(s, row.workspace_id, "message.send_failed", payload)


# --- inbox.updated ----------------------------------------------------------------------------


def inbox_updated(
    s: Session,
    workspace_id: int,
    *,
    user_id: int,
    message_id: int,
    thread_id: int,
    state: str,
    is_read: bool,
) -> None:
    emit(
        s,
        workspace_id,
        "inbox.updated",
        {
            "user_id": user_id,
            "message_id": message_id,
            "thread_id": thread_id,
            "state": state,
            "is_read": is_read,
        },
    )


# --- account.state_changed ----------------------------------------------------------------------


def item_updated(s: Session, item: InboxItem) -> None:
    """``inbox.updated`` for an item whose state or read flag was just changed."""
    inbox_updated(
        s,
        item.workspace_id,
        user_id=item.user_id,
        message_id=item.message_id,
        thread_id=item.thread_id,
        state=item.state,
        is_read=item.is_read,
    )


def account_state_changed(
    s: Session,
    workspace_id: int,
    *,
    account_id: int,
    user_id: int,
    old: str,
    new: str,
    error_code: str | None,
) -> None:
    emit(
        s,
        workspace_id,
        "account.state_changed",
        {
            "account_id": account_id,
            "user_id": user_id,
            "old": old,
            "new": new,
            "error_code": error_code,
        },
    )
