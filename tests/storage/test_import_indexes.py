"""The indexes an imported message writes: none that another index already serves.

Every index of the import's tables is written for every stored message. In a big
workspace an index keyed at random (by thread, by a referenced Message-ID) costs a leaf
page per row at each commit, which is what made an import into a million messages
slower than into ten thousand (issue 14). An index whose columns lead another index
serves no lookup the longer one does not, and is pure write cost.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, UniqueConstraint

from crmail.storage.models import Base

IMPORT_TABLES = (
    "messages",
    "message_raw",
    "message_refs",
    "participants",
    "attachments",
    "placements",
    "timeline_entries",
    "inbox_items",
    "threads",
)

# Single-column foreign-key indexes a longer index also leads with, kept from before this
# test: each is keyed in insertion order (a workspace, user or folder id and then the
# rowid; message ids grow), so a new row lands in the index's last leaf page, the same
# few pages at every size. A new entry here must be as cheap; one keyed at random is not.
APPEND_ORDERED = {
    "ix_messages_workspace_id",
    "ix_message_refs_workspace_id",
    "ix_placements_folder_id",
    "ix_timeline_entries_workspace_id",
    "ix_timeline_entries_message_id",
    "ix_inbox_items_user_id",
    "ix_threads_workspace_id",
}


def _keys(table: Table) -> dict[str, tuple[str, ...]]:
    """Each index's and unique constraint's leading columns as written (an expression
    by its text)."""
    out: dict[str, tuple[str, ...]] = {}
    for index in table.indexes:
        assert isinstance(index, Index)
        out[str(index.name)] = tuple(
            e.key if isinstance(e, Column) else str(e) for e in index.expressions
        )
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            out[str(constraint.name or f"uq_{table.name}")] = tuple(constraint.columns.keys())
    pk = tuple(table.primary_key.columns.keys())
    if len(pk) > 1:
        out[f"pk_{table.name}"] = pk
    return out


def test_no_index_of_an_imported_row_repeats_the_lead_of_another() -> None:
    redundant = []
    for name in IMPORT_TABLES:
        keys = _keys(Base.metadata.tables[name])
        for index, columns in keys.items():
            longer = [
                other
                for other, cols in keys.items()
                if other != index and len(cols) > len(columns) and cols[: len(columns)] == columns
            ]
            if longer and index not in APPEND_ORDERED:
                redundant.append(f"{name}.{index} {columns} is led by {longer}")
    assert redundant == []


def test_a_thread_s_messages_are_found_through_the_thread_date_index() -> None:
    # The index that replaced ix_messages_thread_id must keep leading with thread_id.
    messages = Base.metadata.tables["messages"]
    keys = _keys(messages)
    assert "ix_messages_thread_id" not in keys
    assert keys["ix_messages_thread_date"][0] == "thread_id"


#: The indexes of the import's tables keyed at random, each with what reads it: in a big
#: workspace each costs an imported row a leaf page of its own at every commit.
RANDOM_KEYED = {
    # dedup at every import, and a message by Message-ID (threading): the key starts
    # with the Message-ID's digest, so one index serves both
    "uq_messages_workspace_id_dedup_key",
    # a thread's messages in date order (thread pages, summaries, merges)
    "ix_messages_thread_date",
    # a reply stored before what it answers, found when that arrives
    "ix_message_refs_ws_ref",
    # timelines of contacts, leads and deals in date order
    "ix_timeline_subject_date",
    # a user's items of a thread (Done on a thread), and the foreign key when a merged
    # thread is deleted
    "ix_inbox_items_thread_id",
    # a reply found by its subject alone, near its date
    "ix_threads_ws_subject",
}

#: The others: led by the row's own id, or by a workspace, user, account or folder and
#: then an id or a date, so a new row lands in the same last leaf pages at any size.
INSERTION_ORDERED = APPEND_ORDERED | {
    "ix_messages_crm_account_id",
    "ix_messages_sent_by_user_id",
    "pk_message_refs",
    "pk_participants",
    "ix_attachments_message_id",
    "ix_placements_account_id",
    "ix_placements_message_id",
    "uq_placements_folder_id_uid",
    "uq_placements_folder_id_remote_id",
    "ix_timeline_entries_created_by",
    "uq_timeline_entries_message_id_subject_type_subject_id",
    "ix_inbox_user_snoozed_due",
    "ix_inbox_items_workspace_id",
    "ix_inbox_items_message_id",
    "ix_inbox_user_state_received",
    "ix_inbox_user_shared_state",
    "uq_inbox_items_user_id_message_id",
    # time-ordered root keys (storage.mail._root_key)
    "uq_threads_workspace_id_root_key",
}


def test_every_index_of_an_imported_row_is_known_to_be_cheap_or_needed() -> None:
    # A new index on these tables must be placed in one of the two sets: keyed in
    # insertion order, or keyed at random with the lookup that needs it. Gone from here:
    # participants.email (no query used it) and messages (workspace, Message-ID).
    names = {index for name in IMPORT_TABLES for index in _keys(Base.metadata.tables[name])}
    assert names == RANDOM_KEYED | INSERTION_ORDERED
    assert not RANDOM_KEYED & INSERTION_ORDERED
