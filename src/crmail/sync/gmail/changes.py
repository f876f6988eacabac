"""Incremental sync of a Gmail account: ``history.list`` from the stored historyId.

The history names the messages that changed (added, deleted for good, labels added or
removed); their current metadata is fetched in batches and made true in the CRM
(:mod:`.ingest`), so a change replayed, or changes merged, end in the same state. The
cost follows the changes: an unchanged mailbox costs one request.

Gmail keeps history for about a week: an older (or unknown) start id answers 404,
raised as :class:`crmail.errors.HistoryExpired`; the worker then re-imports the window,
which duplicates nothing (messages are found again by their Gmail id and dedup key).
"""

from __future__ import annotations

from datetime import datetime

from crmail.providers.gmail import GmailClient, History
from crmail.sync.gmail.importer import PAGE
from crmail.sync.gmail.ingest import Cursor, GmailIngest, Outcome


def touched_and_gone(history: History) -> tuple[list[str], set[str]]:
    """Ids whose current state must be read (in order of first change) and ids deleted
    for good."""
    touched: dict[str, None] = {}
    gone: set[str] = set()
    for record in history.records:
        for ref in record.messages_added:
            touched.setdefault(ref.id)
        for change in (*record.labels_added, *record.labels_removed):
            touched.setdefault(change.message.id)
        for ref in record.messages_deleted:
            gone.add(ref.id)
    return [i for i in touched if i not in gone], gone


async def catch_up(
    client: GmailClient, ingest: GmailIngest, start_history_id: int, *, not_before: datetime
) -> tuple[int, Outcome]:
    """Apply every change after ``start_history_id``; the new cursor and what was done.

    :raises HistoryExpired: Gmail no longer has that history: re-sync in full.
    """
    history = await client.list_history(start_history_id)
    total = Outcome()
    if history.history_id == start_history_id and not history.records:
        return start_history_id, total
    ids, gone = touched_and_gone(history)
    chunks = [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)] or [[]]
    for n, chunk in enumerate(chunks):
        metas, missing = await ingest.metadata(chunk) if chunk else ([], set())
        last = n == len(chunks) - 1
        outcome = await ingest.apply(
            metas,
            missing | (gone if last else set()),
            cursor=Cursor(history_id=history.history_id if last else None),
            not_before=not_before,
        )
        total.stored += outcome.stored
        total.placed += outcome.placed
        total.skipped.update(outcome.skipped)
    return history.history_id, total
