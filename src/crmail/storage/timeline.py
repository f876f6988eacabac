"""Timelines: the mail linked to a contact, lead or deal, newest first, paged by keyset.

Read from ``timeline_entries`` alone in the order of its (subject, message date,
message) index: the date is copied onto each entry when it is written, so no join or
sort over the subject's messages is needed, however many there are.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput, NotFound
from crmail.storage import paging, visibility
from crmail.storage.message_reads import summaries
from crmail.storage.models import Contact, Deal, Lead, TimelineEntry
from crmail.storage.views import Page, TimelineItem, UserInfo

SUBJECT_TYPES = ("contact", "lead", "deal")
_MODELS: dict[str, type[Contact] | type[Lead] | type[Deal]] = {
    "contact": Contact,
    "lead": Lead,
    "deal": Deal,
}


def check_subject(s: Session, workspace_id: int, subject_type: str, subject_id: int) -> None:
    """InvalidInput for an unknown type, NotFound for a missing id or another workspace's."""
    model = _MODELS.get(subject_type)
    if model is None:
        raise InvalidInput(f"subject_type must be one of {', '.join(SUBJECT_TYPES)}")
    found = s.scalar(
        select(model.id).where(model.id == subject_id, model.workspace_id == workspace_id)
    )
    if found is None:
        raise NotFound(f"{subject_type} {subject_id} not found")


def timeline(
    s: Session,
    viewer: UserInfo,
    subject_type: str,
    subject_id: int,
    limit: int = 50,
    before: str | None = None,
) -> Page[TimelineItem]:
    """Messages linked to a contact, lead or deal, newest first, with why they are linked."""
    workspace_id = viewer.workspace_id
    check_subject(s, workspace_id, subject_type, subject_id)
    e = TimelineEntry
    q = select(e.message_id, e.reason, e.message_date).where(
        e.workspace_id == workspace_id,
        e.subject_type == subject_type,
        e.subject_id == subject_id,
        # Linked mail is visible by the rule; applied anyway, so a change of the rule
        # reaches timelines too.
        visibility.message_visible(viewer, e.message_id),
    )
    cond = paging.older_than(e.message_date, e.message_id, before)
    if cond is not None:
        q = q.where(cond)
    n = paging.clamp(limit)
    rows = s.execute(q.order_by(e.message_date.desc(), e.message_id.desc()).limit(n + 1)).all()
    page = rows[:n]
    found = summaries(s, workspace_id, [r[0] for r in page])
    items = tuple(TimelineItem(found[mid], reason) for mid, reason, _ in page)
    nxt = paging.encode_cursor(page[-1][2], page[-1][0]) if len(rows) > n else None
    return Page(items, nxt)
