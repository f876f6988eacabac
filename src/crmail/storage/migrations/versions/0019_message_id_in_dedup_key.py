"""messages: found by Message-ID through the dedup key; no Message-ID index

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 11:30:00

The dedup key of a message with a Message-ID was one digest of the Message-ID and the
From address. It now starts with a digest of the Message-ID alone, followed by the first
half of the old key (crmail.domain.identity): threading finds a message by Message-ID
as a range of the unique (workspace, dedup key) index, and the index on
(workspace, Message-ID) goes. Both were keyed at random, so a big workspace's import
paid a leaf page of each per message (issue 14).

Stop every crmail process before upgrading: a process still running the old code would
compute old keys and store copies twice. The digests are computed here, not imported,
so this revision keeps meaning what it meant. Keys of messages without a Message-ID do
not change. Downgrading recomputes the old keys from the stored Message-ID and From.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_WITH_ID = "message_id IS NOT NULL AND message_id <> ''"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _new_key(message_id: str, old_key: str) -> str:
    return _sha256(f"mid\n{message_id}")[:32] + old_key[:32]


def _old_key(message_id: str, from_email: str | None) -> str:
    return _sha256(f"mid\n{message_id}\n{from_email or ''}")


def upgrade() -> None:
    op.drop_index("ix_messages_ws_msgid", table_name="messages")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE messages SET dedup_key ="
            " substr(encode(sha256(convert_to('mid' || chr(10) || message_id, 'UTF8')), 'hex'),"
            " 1, 32) || substr(dedup_key, 1, 32)"
            f" WHERE {_WITH_ID}"
        )
    else:
        _sqlite_function(bind, "crmail_0019_key", 2, _new_key)
        op.execute(
            f"UPDATE messages SET dedup_key = crmail_0019_key(message_id, dedup_key) WHERE {_WITH_ID}"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE messages SET dedup_key = encode(sha256(convert_to("
            "'mid' || chr(10) || message_id || chr(10) || coalesce(from_email, ''), 'UTF8')),"
            f" 'hex') WHERE {_WITH_ID}"
        )
    else:
        _sqlite_function(bind, "crmail_0019_old_key", 2, _old_key)
        op.execute(
            "UPDATE messages SET dedup_key = crmail_0019_old_key(message_id, from_email)"
            f" WHERE {_WITH_ID}"
        )
    op.create_index("ix_messages_ws_msgid", "messages", ["workspace_id", "message_id"])


def _sqlite_function(bind: sa.Connection, name: str, arity: int, fn: object) -> None:
    raw = bind.connection.driver_connection
    assert raw is not None
    raw.create_function(name, arity, fn, deterministic=True)
