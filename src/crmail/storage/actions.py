"""What a user does to mail in the CRM: Done, Snooze, read/unread, delete, move.

Each function changes the CRM at once and queues the matching server change in the same
transaction (see :mod:`crmail.storage.outbox`). A user acts only on their own copies:
their Inbox items and the placements in their own accounts. A teammate's copy is never
touched, and trying to act on mail that only a teammate holds is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from crmail.domain.folders import Role
from crmail.domain.inbox import ItemState, next_state
from crmail.errors import Forbidden, InvalidInput, NotFound
from crmail.storage import crm, notify, outbox, visibility
from crmail.storage.mail import in_user_inbox
from crmail.storage.models import (
    Folder,
    InboxItem,
    MailAccount,
    Message,
    OutboxAction,
    Placement,
    utcnow,
)

SEEN = "\\Seen"


@dataclass(frozen=True, slots=True)
class Queued:
    """What an action queued: the accounts whose workers should wake up."""

    account_ids: frozenset[int]
    items: int
    #: the workspace's default sending provider has work too
    default_provider: bool = False


def _thread_messages(s: Session, user: crm.UserInfo, thread_id: int) -> list[int]:
    ids = list(
        s.scalars(
            select(Message.id).where(
                Message.thread_id == thread_id, Message.workspace_id == user.workspace_id
            )
        )
    )
    # The actor acts on their own copies only, but a thread they cannot see is not found.
    if not visibility.thread_messages(s, user, thread_id):
        raise NotFound(f"thread {thread_id} not found")
    return ids


def _my_items(s: Session, user: crm.UserInfo, message_ids: list[int]) -> list[InboxItem]:
    if not message_ids:
        return []
    return list(
        s.scalars(
            select(InboxItem).where(
                InboxItem.user_id == user.id, InboxItem.message_id.in_(message_ids)
            )
        )
    )


def _refuse_teammates_mail(s: Session, user: crm.UserInfo, message_ids: list[int]) -> None:
    """Nothing of the user's own to act on: say so clearly if it is a teammate's mail."""
    owner = s.scalar(
        select(InboxItem.user_id).where(
            InboxItem.message_id.in_(message_ids), InboxItem.user_id != user.id
        )
    )
    if owner is not None:
        raise Forbidden(
            "this email is in a teammate's Inbox; only they can act on their copy",
            hint="Done, Snooze and archive apply to your own mailbox only",
        )


def _my_placements(
    s: Session, user: crm.UserInfo, message_ids: list[int]
) -> list[tuple[int, int, str, dict[str, object]]]:
    """(account id, message id, folder role, account settings) of the user's own copies."""
    if not message_ids:
        return []
    rows = s.execute(
        select(Placement.account_id, Placement.message_id, Folder.role, MailAccount.settings)
        .join(Folder, Folder.id == Placement.folder_id)
        .join(MailAccount, MailAccount.id == Placement.account_id)
        .where(MailAccount.user_id == user.id, Placement.message_id.in_(message_ids))
        .order_by(Placement.id)
    ).all()
    return [(a, m, r, dict(cfg or {})) for a, m, r, cfg in rows]


def _queue(
    s: Session,
    user: crm.UserInfo,
    account_id: int,
    message_id: int,
    change: outbox.SyncChange,
    accounts: set[int],
) -> None:
    """Queue ``change`` for the user's copy in ``account_id`` and note the account to wake."""
    outbox.enqueue_sync(
        s,
        workspace_id=user.workspace_id,
        account_id=account_id,
        user_id=user.id,
        message_id=message_id,
        change=change,
    )
    accounts.add(account_id)


def archive_on_done(settings: dict[str, object]) -> bool:
    return bool(settings.get("archive_on_done", True))


def done(s: Session, user: crm.UserInfo, thread_id: int) -> Queued:
    """Handled: out of the user's CRM Inbox; read and archived in the user's own mailbox."""
    ids = _thread_messages(s, user, thread_id)
    items = [i for i in _my_items(s, user, ids) if i.state != ItemState.DONE.value]
    if not items and not _my_items(s, user, ids):
        _refuse_teammates_mail(s, user, ids)
    for item in items:
        item.state = ItemState.DONE.value
        item.is_read = True
        item.snooze_until = None
        notify.item_updated(s, item)
    accounts: set[int] = set()
    for account_id, mid, role, cfg in _my_placements(s, user, [i.message_id for i in items]):
        if role != Role.INBOX.value:
            continue
        change = outbox.SyncChange(
            add=frozenset({SEEN}),
            move_to_role=Role.ARCHIVE.value if archive_on_done(cfg) else None,
            from_role=Role.INBOX.value,
        )
        _queue(s, user, account_id, mid, change, accounts)
    return Queued(frozenset(accounts), len(items))


def snooze(s: Session, user: crm.UserInfo, thread_id: int, until: datetime) -> Queued:
    """Out of the Inbox until ``until``; nothing changes on the server."""
    if until <= utcnow():
        raise InvalidInput("snooze time must be in the future")
    ids = _thread_messages(s, user, thread_id)
    items = [
        i
        for i in _my_items(s, user, ids)
        if i.state in (ItemState.OPEN.value, ItemState.SNOOZED.value)
    ]
    if not items:
        _refuse_teammates_mail(s, user, ids)
        raise InvalidInput("nothing of this thread is in your Inbox")
    for item in items:
        changed = item.state != ItemState.SNOOZED.value
        item.state = ItemState.SNOOZED.value
        item.snooze_until = until
        if changed:  # a new wake-up time alone is not an Inbox change
            notify.item_updated(s, item)
    return Queued(frozenset(), len(items))


def set_read(s: Session, user: crm.UserInfo, thread_id: int, read: bool) -> Queued:
    """Read/unread in the CRM and on the server copies in the user's own accounts."""
    ids = _thread_messages(s, user, thread_id)
    items = _my_items(s, user, ids)
    copies = _my_placements(s, user, ids)
    if not items and not copies:
        _refuse_teammates_mail(s, user, ids)
        raise Forbidden("none of this thread is in your mailbox")
    for item in items:
        if item.is_read != read:
            item.is_read = read
            notify.item_updated(s, item)
    change = outbox.SyncChange(
        add=frozenset({SEEN}) if read else frozenset(),
        remove=frozenset() if read else frozenset({SEEN}),
    )
    accounts: set[int] = set()
    for account_id, mid in {(a, m) for a, m, _, _ in copies}:
        _queue(s, user, account_id, mid, change, accounts)
    return Queued(frozenset(accounts), len(items))


def _own_copies_or_refuse(
    s: Session, user: crm.UserInfo, message_id: int
) -> list[tuple[int, int, str, dict[str, object]]]:
    if not crm.can_see_message(s, user, message_id):
        raise NotFound(f"message {message_id} not found")
    copies = _my_placements(s, user, [message_id])
    if not copies:
        raise Forbidden(
            "this email is not in your mailbox",
            hint="delete and move act on your own mailbox; a teammate's copy stays theirs",
        )
    return copies


def delete_message(s: Session, user: crm.UserInfo, message_id: int) -> Queued:
    """Move the user's copies to Trash (copies already in Trash or Junk are deleted for good).

    The CRM keeps the message on its timelines: deleting mail from a mailbox is not
    erasing the CRM's record of a conversation.
    """
    copies = _own_copies_or_refuse(s, user, message_id)
    accounts: set[int] = set()
    for account_id, mid, role, _ in copies:
        if role in (Role.TRASH.value, Role.JUNK.value):
            change = outbox.SyncChange(expunge=True, from_role=role)
        else:
            change = outbox.SyncChange(move_to_role=Role.TRASH.value)
        _queue(s, user, account_id, mid, change, accounts)
    _leave_inbox(s, user, message_id)
    return Queued(frozenset(accounts), 1)


def move_message(s: Session, user: crm.UserInfo, message_id: int, folder: str) -> Queued:
    folder = folder.strip()
    if not folder:
        raise InvalidInput("folder name is empty")
    copies = _own_copies_or_refuse(s, user, message_id)
    accounts: set[int] = set()
    for account_id in {a for a, _, _, _ in copies}:
        _queue(s, user, account_id, message_id, outbox.SyncChange(move_to=folder), accounts)
    if folder.upper() == "INBOX":
        res = s.execute(
            update(InboxItem)
            .where(
                InboxItem.user_id == user.id,
                InboxItem.message_id == message_id,
                # Items already open are left alone, so they are not reported as changed.
                InboxItem.state != ItemState.OPEN.value,
            )
            .values(state=ItemState.OPEN.value, snooze_until=None)
            .returning(*_ITEM_COLUMNS)
        )
        _notify_rows(s, res.all())
    else:
        _leave_inbox(s, user, message_id)
    return Queued(frozenset(accounts), 1)


def _leave_inbox(s: Session, user: crm.UserInfo, message_id: int) -> None:
    res = s.execute(
        update(InboxItem)
        .where(
            InboxItem.user_id == user.id,
            InboxItem.message_id == message_id,
            InboxItem.state.in_([ItemState.OPEN.value, ItemState.SNOOZED.value]),
        )
        .values(state=ItemState.ARCHIVED.value, snooze_until=None)
        .returning(*_ITEM_COLUMNS)
    )
    _notify_rows(s, res.all())


# What an inbox.updated event needs, returned by the bulk UPDATEs above and below.
_ITEM_COLUMNS = (
    InboxItem.workspace_id,
    InboxItem.user_id,
    InboxItem.message_id,
    InboxItem.thread_id,
    InboxItem.state,
    InboxItem.is_read,
)


def _notify_rows(s: Session, rows: Sequence[Row[int, int, int, int, str, bool]]) -> None:
    for ws, user_id, message_id, thread_id, state, read in rows:
        notify.inbox_updated(
            s,
            ws,
            user_id=user_id,
            message_id=message_id,
            thread_id=thread_id,
            state=state,
            is_read=read,
        )


def wake_snoozed(s: Session, now: datetime | None = None) -> int:
    """Snoozed items whose time has come are back in the Inbox."""
    res = s.execute(
        update(InboxItem)
        .where(
            InboxItem.state == ItemState.SNOOZED.value, InboxItem.snooze_until <= (now or utcnow())
        )
        .values(state=ItemState.OPEN.value, snooze_until=None)
        .returning(*_ITEM_COLUMNS)
    )
    rows = res.all()
    _notify_rows(s, rows)
    return len(rows)


def sync_failed(s: Session, action_id: int, error: str, *, retryable: bool) -> str:
    """Record a failed server change (see :func:`outbox.fail`).

    One that failed for good gives the user's Inbox item back the state the server
    holds: the CRM never shows "done" for mail still unread in the mailbox's INBOX. The
    error stays on the action, which the Inbox and the message show.
    """
    state = outbox.fail(s, action_id, error, retryable=retryable)
    if state == outbox.FAILED:
        _back_to_server_state(s, s.get_one(OutboxAction, action_id))
    return state


def _back_to_server_state(s: Session, action: OutboxAction) -> None:
    user_id, message_id = action.user_id, action.message_id
    if user_id is None or message_id is None or action.account_id is None:
        return
    if outbox.pending_message_ids(s, [action.account_id], [message_id]):
        return  # the user acted again since: that newer choice is on its way
    item = s.scalar(
        select(InboxItem).where(InboxItem.user_id == user_id, InboxItem.message_id == message_id)
    )
    if item is None:
        return
    # The placements hold the server's state as last synced: the failed change never
    # reached them.
    in_inbox = [
        frozenset(f or ())
        for f in s.scalars(
            in_user_inbox(user_id, Placement.flags).where(Placement.message_id == message_id)
        )
    ]
    anywhere = in_inbox or [
        frozenset(f or ())
        for f in s.scalars(
            select(Placement.flags)
            .join(MailAccount, MailAccount.id == Placement.account_id)
            .where(MailAccount.user_id == user_id, Placement.message_id == message_id)
        )
    ]
    read = any(SEEN in f for f in anywhere) if anywhere else item.is_read
    state = ItemState(item.state)
    change = outbox.SyncChange.from_payload(action.payload)
    about_place = change.move_to_role or change.move_to or change.expunge or change.from_role
    if about_place and not (state is ItemState.SNOOZED and in_inbox):
        # The change was about where the mail is (Done, delete, move): the server decides.
        state = ItemState.OPEN if in_inbox else ItemState.ARCHIVED
    elif not in_inbox:
        # The mail left INBOX while this action waited (the refresh held back for it):
        # the item follows, as it would have without the action.
        state = next_state(state, False) or state
    if item.state == state.value and item.is_read == read:
        return
    item.state = state.value
    item.is_read = read
    if state is not ItemState.SNOOZED:
        item.snooze_until = None
    notify.item_updated(s, item)
