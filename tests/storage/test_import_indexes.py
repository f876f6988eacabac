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
