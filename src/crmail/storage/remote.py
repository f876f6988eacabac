"""Reads and cursor writes for providers that name messages by their own ids (Gmail).

A Gmail message is one stored message with one placement per synced label it carries
(see :mod:`crmail.sync.gmail.labels`); these queries find those placements by the
provider's id and keep the account's history cursor on its All Mail folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crmail.storage.mail import FolderInfo, FolderStep, StepResult, _folder_info, apply_step
from crmail.storage.models import Folder, InboxItem, MailAccount, Message, Placement, Thread


@dataclass(slots=True)
class Placed:
    """A stored message's copies in one account, by folder id (with their flags)."""

    message_id: int
    dedup_key: str
    folders: dict[int, tuple[str, ...]] = field(default_factory=dict)


def placed_by_uid(s: Session, account_id: int, uids: Iterable[int]) -> dict[int, Placed]:
    wanted = sorted(set(uids))
    found: dict[int, Placed] = {}
    for i in range(0, len(wanted), 500):
        rows = s.execute(
            select(
                Placement.uid,
                Placement.folder_id,
                Placement.flags,
                Placement.message_id,
                Message.dedup_key,
            )
            .join(Message, Message.id == Placement.message_id)
            .where(Placement.account_id == account_id, Placement.uid.in_(wanted[i : i + 500]))
        ).all()
        for uid, folder_id, flags, message_id, key in rows:
            placed = found.setdefault(uid, Placed(message_id, key))
            placed.folders[folder_id] = tuple(sorted(flags or ()))
    return found


def remote_ids_of(s: Session, account_id: int, message_id: int) -> dict[str, str | None]:
    """The provider's ids of a stored message in this account, each with its thread."""
    rows = s.execute(
        select(Placement.remote_id, Placement.remote_thread).where(
            Placement.account_id == account_id,
            Placement.message_id == message_id,
            Placement.remote_id.is_not(None),
        )
    ).all()
    return {rid: thread for rid, thread in rows if rid is not None}


def remote_ids_in(s: Session, folder_id: int) -> list[str]:
    return [
        rid
        for rid in s.scalars(select(Placement.remote_id).where(Placement.folder_id == folder_id))
        if rid is not None
    ]


def restart_import(s: Session, folder_id: int, *, history_id: int, total: int) -> FolderInfo:
    """Begin (or, after the provider forgot our history cursor, begin again) an
    account's import: placements stay, so nothing stored is lost or stored twice."""
    f = s.get_one(Folder, folder_id)
    f.uidvalidity = 1
    f.uidnext = 0
    f.highestmodseq = history_id
    f.import_floor = None
    f.import_total = total
    f.import_done = 0
    f.import_complete = False
    s.flush()
    return _folder_info(f)


def apply_steps(s: Session, account_id: int, steps: list[FolderStep]) -> list[StepResult]:
    """The steps of one message batch across the account's folders, in one transaction
    (the caller's): a message and all its placements, or none of them. Messages the
    provider puts in one conversation end in one crmail thread."""
    results = [apply_step(s, account_id, step) for step in steps]
    joined = {c.remote_thread for step in steps for c in step.copies if c.new is not None}
    join_remote_threads(s, account_id, {t for t in joined if t})
    return results


def join_remote_threads(s: Session, account_id: int, remote_threads: set[str]) -> None:
    """Gmail's threadId joins crmail's threading: crmail threads by Message-ID links and
    by subject within 30 days, Gmail by links and subject at any distance; where Gmail
    says two of the account's messages are one conversation, their threads become one."""
    if not remote_threads:
        return
    rows = s.execute(
        select(Placement.remote_thread, Message.thread_id)
        .join(Message, Message.id == Placement.message_id)
        .where(
            Placement.account_id == account_id,
            Placement.remote_thread.in_(sorted(remote_threads)),
        )
        .distinct()
    ).all()
    by_remote: dict[str, set[int]] = {}
    for remote, thread_id in rows:
        if remote is not None:
            by_remote.setdefault(remote, set()).add(thread_id)
    for threads in by_remote.values():
        if len(threads) > 1:
            into, *others = sorted(threads)
            merge_threads(s, into, others)


def merge_threads(s: Session, into: int, others: list[int]) -> None:
    quick = {"synchronize_session": False}
    latest = s.scalar(
        select(func.max(Thread.last_message_at)).where(Thread.id.in_([into, *others]))
    )
    s.execute(
        update(Message).where(Message.thread_id.in_(others)).values(thread_id=into),
        execution_options=quick,
    )
    s.execute(
        update(InboxItem).where(InboxItem.thread_id.in_(others)).values(thread_id=into),
        execution_options=quick,
    )
    s.execute(delete(Thread).where(Thread.id.in_(others)), execution_options=quick)
    s.execute(update(Thread).where(Thread.id == into).values(last_message_at=latest))


def gmail_accounts(s: Session, email: str) -> list[int]:
    """The Gmail API accounts of a mailbox address (a push notification names it)."""
    return list(
        s.scalars(
            select(MailAccount.id)
            .where(MailAccount.provider == "gmail", func.lower(MailAccount.email) == email.lower())
            .order_by(MailAccount.id)
        )
    )
