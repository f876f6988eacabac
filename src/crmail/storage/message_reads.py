"""Reading messages: summaries for lists, full detail for one message or a whole thread.

A fixed number of statements whatever the number of messages: every query takes the
whole set of ids, and visibility is part of the query that loads the rows (one rule,
:func:`crmail.storage.visibility.message_visible`), never a check per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, func, literal, select, union_all
from sqlalchemy.orm import Session

from crmail.errors import NotFound
from crmail.mime import parse_message
from crmail.storage import outbox, visibility
from crmail.storage.models import (
    Attachment,
    Folder,
    MailAccount,
    Message,
    MessageRaw,
    Participant,
    Placement,
    TimelineEntry,
    User,
)
from crmail.storage.views import (
    Address,
    AttachmentInfo,
    LinkInfo,
    MessageDetail,
    MessageSummary,
    PlacementInfo,
    UserInfo,
)


def message_date() -> ColumnElement[datetime]:
    # The Date header when there is one (what the user sees in a mail client), else the
    # time we stored it. type_ keeps the UTC-aware decoding on the coalesced value.
    return func.coalesce(Message.sent_at, Message.received_at, type_=Message.received_at.type)


def own_addresses(s: Session, workspace_id: int) -> frozenset[str]:
    """Every workspace user's and mail account's address: mail from these is outbound."""
    q = union_all(
        select(User.email).where(User.workspace_id == workspace_id),
        select(MailAccount.email).where(MailAccount.workspace_id == workspace_id),
    )
    return frozenset(e.lower() for e in s.scalars(q))


class _SummaryFields(Protocol):
    """What a summary needs of a message: a loaded row or just these columns."""

    @property
    def id(self) -> int: ...
    @property
    def thread_id(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def from_email(self) -> str | None: ...
    @property
    def from_name(self) -> str: ...
    @property
    def snippet(self) -> str: ...


#: the columns of :class:`_SummaryFields`: a page loads these, not whole messages
_SUMMARY_COLUMNS = (
    Message.id,
    Message.thread_id,
    Message.subject,
    Message.from_email,
    Message.from_name,
    Message.snippet,
)


def _summary(
    m: _SummaryFields,
    date: datetime,
    to: Sequence[Address],
    attachment_count: int,
    own: frozenset[str],
) -> MessageSummary:
    sender = Address(m.from_email, m.from_name) if m.from_email else None
    outbound = m.from_email is not None and m.from_email.lower() in own
    return MessageSummary(
        id=m.id,
        thread_id=m.thread_id,
        subject=m.subject,
        from_=sender,
        to=tuple(to),
        date=date,
        snippet=m.snippet,
        direction="outbound" if outbound else "inbound",
        attachment_count=attachment_count,
    )


def summaries(s: Session, workspace_id: int, ids: Sequence[int]) -> dict[int, MessageSummary]:
    """Summaries of messages the caller already filtered by visibility (a page's rows)."""
    if not ids:
        return {}
    # Columns, not entities: building a Message per row (every column decoded, identity
    # map, instrumentation) cost more than the page's SQL.
    rows = s.execute(select(*_SUMMARY_COLUMNS, message_date()).where(Message.id.in_(ids))).all()
    to: dict[int, list[Address]] = {}
    q = (
        select(Participant.message_id, Participant.email, Participant.name)
        .where(Participant.message_id.in_(ids), Participant.role == "to")
        .order_by(Participant.message_id, Participant.position)
    )
    for mid, email, name in s.execute(q):
        to.setdefault(mid, []).append(Address(email, name))
    # A comprehension, not dict(result): a Result has .keys() (its column names), so
    # dict() would take it for a mapping.
    counts: dict[int, int] = {
        mid: n
        for mid, n in s.execute(
            select(Attachment.message_id, func.count())
            .where(Attachment.message_id.in_(ids))
            .group_by(Attachment.message_id)
        )
    }
    own = own_addresses(s, workspace_id)
    return {r.id: _summary(r, r[-1], to.get(r.id, ()), counts.get(r.id, 0), own) for r in rows}


def message_details(s: Session, viewer: UserInfo, ids: Sequence[int]) -> list[MessageDetail]:
    """Full detail of those of ``ids`` ``viewer`` may see, in the order of ``ids``."""
    if not ids:
        return []
    rows = s.execute(
        select(Message, message_date()).where(
            Message.id.in_(ids),
            Message.workspace_id == viewer.workspace_id,
            visibility.message_visible(viewer, Message.id),
        )
    ).all()
    found = {m.id: (m, date) for m, date in rows}
    seen = [i for i in ids if i in found]
    if not seen:
        return []
    parts: dict[int, dict[str, list[Address]]] = {}
    for mid, role, email, name in s.execute(
        select(Participant.message_id, Participant.role, Participant.email, Participant.name)
        .where(Participant.message_id.in_(seen))
        .order_by(Participant.message_id, Participant.role, Participant.position)
    ):
        parts.setdefault(mid, {}).setdefault(role, []).append(Address(email, name))
    atts: dict[int, list[AttachmentInfo]] = {}
    for a in s.scalars(
        select(Attachment).where(Attachment.message_id.in_(seen)).order_by(Attachment.id)
    ):
        atts.setdefault(a.message_id, []).append(
            AttachmentInfo(
                a.id,
                a.filename,
                a.content_type,
                a.size,
                a.content_id,
                a.inline,
                a.placeholder_reason,
            )
        )
    # Only the viewer's own copies: where a teammate filed the message is their business.
    places: dict[int, list[PlacementInfo]] = {}
    for mid, account_id, folder, role, uid, flags in s.execute(
        select(
            Placement.message_id,
            Placement.account_id,
            Folder.name,
            Folder.role,
            Placement.uid,
            Placement.flags,
        )
        .join(Folder, Folder.id == Placement.folder_id)
        .join(MailAccount, MailAccount.id == Placement.account_id)
        .where(Placement.message_id.in_(seen), MailAccount.user_id == viewer.id)
        .order_by(Placement.id)
    ):
        places.setdefault(mid, []).append(
            PlacementInfo(account_id, folder, role, uid, tuple(flags or ()))
        )
    links: dict[int, list[LinkInfo]] = {}
    for mid, kind, subject_id, reason in s.execute(
        select(
            TimelineEntry.message_id,
            TimelineEntry.subject_type,
            TimelineEntry.subject_id,
            TimelineEntry.reason,
        )
        .where(TimelineEntry.message_id.in_(seen))
        .order_by(TimelineEntry.id)
    ):
        links.setdefault(mid, []).append(LinkInfo(kind, subject_id, reason))
    # Bodies are not stored twice: the raw message is the truth, parsed when read.
    raws: dict[int, bytes] = {
        mid: raw
        for mid, raw in s.execute(
            select(MessageRaw.message_id, MessageRaw.raw).where(MessageRaw.message_id.in_(seen))
        )
    }
    errors = outbox.sync_errors(s, viewer.id, seen)
    own = own_addresses(s, viewer.workspace_id)
    out = []
    for mid in seen:
        m, date = found[mid]
        roles = parts.get(mid, {})
        raw = raws.get(mid)
        parsed = parse_message(raw) if raw is not None else None
        out.append(
            MessageDetail(
                summary=_summary(m, date, roles.get("to", ()), len(atts.get(mid, ())), own),
                message_id_header=m.message_id,
                participants={k: tuple(v) for k, v in roles.items()},
                text=parsed.text if parsed else None,
                html=parsed.html if parsed else None,
                attachments=tuple(atts.get(mid, ())),
                parse_failed=m.parse_failed,
                defects=tuple(m.defects or ()),
                placements=tuple(places.get(mid, ())),
                links=tuple(links.get(mid, ())),
                send_state=m.send_state,
                send_error=m.send_error,
                sync_error=errors.get(mid),
            )
        )
    return out


def message_detail(s: Session, viewer: UserInfo, message_id: int) -> MessageDetail:
    found = message_details(s, viewer, [message_id])
    if not found:
        # Not visible and nonexistent answer the same, so ids of others' mail do not leak.
        raise NotFound(f"message {message_id} not found")
    return found[0]


def message_raw(s: Session, viewer: UserInfo, message_id: int) -> bytes:
    row = s.execute(
        select(literal(True), MessageRaw.raw)
        .select_from(Message)
        .outerjoin(MessageRaw, MessageRaw.message_id == Message.id)
        .where(Message.id == message_id, visibility.message_visible(viewer, Message.id))
    ).first()
    if row is None:
        raise NotFound(f"message {message_id} not found")
    if row[1] is None:
        raise NotFound(f"the original of message {message_id} is not stored")
    return bytes(row[1])
