"""A contact's, lead's or deal's activity: its mail and its meetings interleaved by date,
newest first, paged by keyset like each of the two timelines.

Each kind is read on its own index in its own order — ``timeline_entries`` by (subject,
message date, message), ``event_links`` by (subject, start, event) — at most a page and
one row of each, and the two are merged here. The cursor is the last row's date, kind
and id: equal dates order meetings before mail, so each side's "after the cursor" is
one range on its own index, and page 1,000 costs what the first one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, or_, select
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput
from crmail.storage import paging, visibility
from crmail.storage.calendar_meetings import meetings_by_id
from crmail.storage.calendar_models import EventLink
from crmail.storage.calendar_views import MeetingView
from crmail.storage.message_reads import summaries
from crmail.storage.models import TimelineEntry
from crmail.storage.timeline import check_subject
from crmail.storage.views import MessageSummary, Page, UserInfo

#: the order of kinds at the same date (descending: meetings first)
_RANK = {"mail": 0, "meeting": 1}


@dataclass(frozen=True, slots=True)
class ActivityItem:
    kind: str  # "mail" | "meeting"
    #: the message's date, or the meeting's start
    at: datetime
    reason: str
    message: MessageSummary | None = None
    meeting: MeetingView | None = None


def encode(at: datetime, kind: str, ident: int) -> str:
    return f"{at.isoformat()}~{kind}~{ident}"


def decode(cursor: str) -> tuple[datetime, str, int]:
    head, _, ident = cursor.rpartition("~")
    when, _, kind = head.rpartition("~")
    if kind not in _RANK:
        raise InvalidInput("before: not a cursor returned by a previous page")
    when_, ident_ = paging.decode_cursor(f"{when}~{ident}")
    return when_, kind, ident_


def _after(
    kind: str,
    when_col: SQLColumnExpression[datetime],
    id_col: SQLColumnExpression[int],
    cursor: tuple[datetime, str, int] | None,
) -> ColumnElement[bool] | None:
    """Rows of ``kind`` after the cursor in (date desc, kind desc, id desc) order."""
    if cursor is None:
        return None
    when, at_kind, ident = cursor
    if at_kind == kind:
        return and_(when_col <= when, or_(when_col < when, id_col < ident))
    if _RANK[kind] < _RANK[at_kind]:  # this kind comes after the cursor's at its date
        return when_col <= when
    return when_col < when


def activity(
    s: Session,
    viewer: UserInfo,
    subject_type: str,
    subject_id: int,
    limit: int = 50,
    before: str | None = None,
) -> Page[ActivityItem]:
    """Mail and meetings linked to a contact, lead or deal, newest first (a meeting at
    its start), with why each is there."""
    workspace_id = viewer.workspace_id
    check_subject(s, workspace_id, subject_type, subject_id)
    cursor = decode(before) if before is not None else None
    n = paging.clamp(limit)
    t = TimelineEntry
    mail_q = select(t.message_id, t.reason, t.message_date).where(
        t.workspace_id == workspace_id,
        t.subject_type == subject_type,
        t.subject_id == subject_id,
        visibility.message_visible(viewer, t.message_id),
    )
    cond = _after("mail", t.message_date, t.message_id, cursor)
    if cond is not None:
        mail_q = mail_q.where(cond)
    mails = s.execute(
        mail_q.order_by(t.message_date.desc(), t.message_id.desc()).limit(n + 1)
    ).all()
    e = EventLink
    meet_q = select(e.event_id, e.reason, e.starts_at).where(
        e.workspace_id == workspace_id,
        e.subject_type == subject_type,
        e.subject_id == subject_id,
    )
    cond = _after("meeting", e.starts_at, e.event_id, cursor)
    if cond is not None:
        meet_q = meet_q.where(cond)
    meetings = s.execute(meet_q.order_by(e.starts_at.desc(), e.event_id.desc()).limit(n + 1)).all()
    merged = sorted(
        [("mail", at, ident, reason) for ident, reason, at in mails]
        + [("meeting", at, ident, reason) for ident, reason, at in meetings],
        key=lambda r: (r[1], _RANK[r[0]], r[2]),
        reverse=True,
    )
    page = merged[:n]
    found_mail = summaries(s, workspace_id, [r[2] for r in page if r[0] == "mail"])
    found_meetings = meetings_by_id(s, [r[2] for r in page if r[0] == "meeting"])
    items = tuple(
        ActivityItem(kind, at, reason, message=found_mail[ident])
        if kind == "mail"
        else ActivityItem(kind, at, reason, meeting=found_meetings[ident])
        for kind, at, ident, reason in page
    )
    last = page[-1] if page else None
    nxt = encode(last[1], last[0], last[2]) if last and len(merged) > n else None
    return Page(items, nxt)
