"""PostgreSQL compresses stored raw messages with lz4

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 04:40:00

An import writes every message's raw bytes once; PostgreSQL compresses values past
about 2 KB, with pglz by default. lz4 does it several times faster (binary COPY of a
~9 KB message: about 60 µs against 150 µs), at a similar size. Only new values are
written with lz4; stored ones stay readable as they are. A server built without lz4
keeps pglz. SQLite stores the bytes as they are: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_IF_LZ4 = """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        ALTER TABLE message_raw ALTER COLUMN raw SET COMPRESSION {method};
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_IF_LZ4.format(method="lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_IF_LZ4.format(method="default"))
