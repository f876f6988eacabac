"""Manual timeline links: a user files a message (or a whole thread) on a contact, lead or deal.

The scope rules link most mail automatically at arrival; these cover the rest (a
colleague's address, a forwarded thread) and undo a wrong guess. Only mail the user can
see may be linked, and only to records of the user's workspace: anything else is "not
found", exactly as for the API's other ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crmail.errors import NotFound
from crmail.storage import crm, item_sharing, notify, visibility
from crmail.storage.models import Message, TimelineEntry


@dataclass(frozen=True, slots=True)
class LinkResult:
    #: messages newly linked (already linked ones are left as they were)
    linked: tuple[int, ...]
    #: messages unlinked
    unlinked: tuple[int, ...] = ()


def _targets(s: Session, user: crm.UserInfo, message_id: int, whole_thread: bool) -> list[int]:
    if not crm.can_see_message(s, user, message_id):
        raise NotFound(f"message {message_id} not found")
    if not whole_thread:
        return [message_id]
    thread_id = s.get_one(Message, message_id).thread_id
    # Only the thread's messages this user can see: linking must not publish a
    # teammate's private reply on a shared timeline.
    return sorted(visibility.thread_messages(s, user, thread_id))


def _check_subject(s: Session, user: crm.UserInfo, subject_type: str, subject_id: int) -> None:
    # InvalidInput for an unknown type, NotFound for another workspace's id.
    crm.timeline(s, user, subject_type, subject_id, limit=1)


def _linked(s: Session, targets: list[int], subject_type: str, subject_id: int) -> list[int]:
    """Which of ``targets`` are on the record's timeline already."""
    return list(
        s.scalars(
            select(TimelineEntry.message_id).where(
                TimelineEntry.message_id.in_(targets),
                TimelineEntry.subject_type == subject_type,
                TimelineEntry.subject_id == subject_id,
            )
        )
    )


def link(
    s: Session,
    user: crm.UserInfo,
    message_id: int,
    subject_type: str,
    subject_id: int,
    *,
    whole_thread: bool = False,
) -> LinkResult:
    _check_subject(s, user, subject_type, subject_id)
    targets = _targets(s, user, message_id, whole_thread)
    existing = set(_linked(s, targets, subject_type, subject_id))
    who = user.name or user.email
    new = [mid for mid in targets if mid not in existing]
    entries = [
        TimelineEntry(
            workspace_id=user.workspace_id,
            message_id=mid,
            subject_type=subject_type,
            subject_id=subject_id,
            reason=f"linked by {who}"[:200],
            source="manual",
            created_by=user.id,
        )
        for mid in new
    ]
    s.add_all(entries)
    s.flush()
    item_sharing.refresh(s, new)
    for entry in entries:
        notify.linked(s, entry)
    return LinkResult(tuple(new))


def unlink(
    s: Session,
    user: crm.UserInfo,
    message_id: int,
    subject_type: str,
    subject_id: int,
    *,
    whole_thread: bool = False,
) -> LinkResult:
    """Remove the message (or thread) from the record's timeline, automatic links included."""
    _check_subject(s, user, subject_type, subject_id)
    targets = _targets(s, user, message_id, whole_thread)
    gone = _linked(s, targets, subject_type, subject_id)
    if not gone:
        raise NotFound(f"message {message_id} is not linked to {subject_type} {subject_id}")
    s.execute(
        delete(TimelineEntry).where(
            TimelineEntry.message_id.in_(gone),
            TimelineEntry.subject_type == subject_type,
            TimelineEntry.subject_id == subject_id,
        )
    )
    item_sharing.refresh(s, gone)
    s.flush()
    return LinkResult((), tuple(gone))
