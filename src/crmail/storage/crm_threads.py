"""Threads the CRM started: what scope "crm_threads" syncs (HighLevel, seeds 001/002).

A thread syncs from a mailbox once its first CRM-sent message went out from that
mailbox's *current* address. Threads follow the address, not the account: after the
owner changes the connected address, threads of the old address stop syncing, and new
CRM email (sent from the new address) starts new ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from crmail.storage.models import Message

_CHUNK = 500


def refs_in_crm_threads(
    s: Session, workspace_id: int, refs: Iterable[str], address: str
) -> set[str]:
    """Which of ``refs`` (Message-IDs from In-Reply-To/References) are messages of a
    thread whose first CRM-sent message was sent from ``address``.

    One query per 500 refs, for a whole ingest batch: the sync never asks per message.
    """
    wanted = sorted(set(refs))
    found: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        referenced = aliased(Message)
        threads = (
            select(referenced.thread_id)
            .where(referenced.workspace_id == workspace_id, referenced.message_id.in_(chunk))
            .scalar_subquery()
        )
        # The first CRM message of each of those threads (ids grow with time).
        first = (
            select(Message.thread_id.label("tid"), func.min(Message.id).label("mid"))
            .where(
                Message.workspace_id == workspace_id,
                Message.origin == "crm",
                Message.thread_id.in_(threads),
            )
            .group_by(Message.thread_id)
            .subquery()
        )
        opener = aliased(Message)
        q = (
            select(referenced.message_id)
            .join(first, first.c.tid == referenced.thread_id)
            .join(opener, opener.id == first.c.mid)
            .where(
                referenced.workspace_id == workspace_id,
                referenced.message_id.in_(chunk),
                func.lower(opener.crm_from) == address.lower(),
            )
        )
        found.update(m for m in s.scalars(q) if m is not None)
    return found
