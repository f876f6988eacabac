"""Rows written by ``storage.bulk`` read back exactly as rows the ORM writes (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from crmail.services import Services
from crmail.storage.bulk import insert_rows
from crmail.storage.models import Message, Thread
from tests.factories import new_world


def test_bulk_rows_read_back_like_orm_rows(services: Services) -> None:
    ws = new_world(services).workspace_id
    paris = timezone(timedelta(hours=1))
    sent = datetime(2026, 3, 1, 9, 30, 15, 120000, tzinfo=paris)

    def write(s):  # type: ignore[no-untyped-def]
        thread = Thread(workspace_id=ws, subject="Quote")
        s.add(thread)
        s.flush()
        common = {"workspace_id": ws, "thread_id": thread.id, "subject": "Quote"}
        s.add(Message(**common, dedup_key="orm", sent_at=sent, is_bulk=True, defects=["x", "é"]))
        insert_rows(
            s,
            Message,
            [
                {
                    **common,
                    "dedup_key": "bulk",
                    "sent_at": sent,
                    "is_bulk": True,
                    "defects": ["x", "é"],
                },
                {**common, "dedup_key": "bulk-2", "sent_at": None, "is_bulk": False, "defects": []},
            ],
        )

    services.db.run(write)
    rows = services.db.run(
        lambda s: {
            m.dedup_key: m for m in s.scalars(select(Message).where(Message.workspace_id == ws))
        }
    )
    orm, bulk, other = rows["orm"], rows["bulk"], rows["bulk-2"]
    for column in ("sent_at", "is_bulk", "defects", "subject", "origin", "from_name", "size"):
        assert getattr(bulk, column) == getattr(orm, column), column
    assert bulk.sent_at == sent and bulk.sent_at.utcoffset() == timedelta(0)
    assert other.sent_at is None and other.is_bulk is False and other.defects == []
    # Python-side defaults are applied as the ORM applies them
    assert bulk.origin == "sync" and bulk.snippet == "" and bulk.parse_failed is False
    assert abs(bulk.received_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert abs(bulk.created_at - orm.created_at) < timedelta(minutes=5)


def test_nothing_to_insert_is_no_statement(services: Services) -> None:
    services.db.run(lambda s: insert_rows(s, Message, []))


def test_raw_bytes_and_text_read_back_exactly(services: Services) -> None:
    """Every byte value, and text beyond ASCII, survive the bulk path (binary COPY on
    PostgreSQL, executemany on SQLite)."""
    from crmail.storage.models import MessageRaw

    ws = new_world(services).workspace_id
    raw = bytes(range(256)) * 40

    def write(s):  # type: ignore[no-untyped-def]
        thread = Thread(workspace_id=ws, subject="Raw")
        s.add(thread)
        s.flush()
        insert_rows(
            s,
            Message,
            [{"workspace_id": ws, "thread_id": thread.id, "dedup_key": "raw", "subject": "Ünï ✓"}],
        )
        mid = s.scalar(select(Message.id).where(Message.dedup_key == "raw"))
        insert_rows(s, MessageRaw, [{"message_id": mid, "raw": raw}])
        return mid

    mid = services.db.run(write)
    assert services.db.run(lambda s: s.get_one(MessageRaw, mid).raw) == raw
    assert services.db.run(lambda s: s.get_one(Message, mid).subject) == "Ünï ✓"


def test_raw_messages_are_compressed_with_lz4_on_postgresql(services: Services) -> None:
    """Migration 0016: the raw bytes an import writes are compressed with lz4 (several
    times faster than PostgreSQL's default pglz) where the server has it."""
    from sqlalchemy import text

    if services.db.is_sqlite:
        pytest.skip("SQLite stores the bytes as they are")

    def look(s):  # type: ignore[no-untyped-def]
        has_lz4 = s.scalar(
            text(
                "SELECT 'lz4' = ANY (enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
        method = s.scalar(
            text(
                "SELECT attcompression FROM pg_attribute"
                " WHERE attrelid = 'message_raw'::regclass AND attname = 'raw'"
            )
        )
        return has_lz4, method

    has_lz4, method = services.db.run(look)
    assert method == ("l" if has_lz4 else "")
