"""Index for the per-user sending rate limit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:20:00

Each send counts the user's "send" actions of the last hour; the index keeps that a
range read however large the outbox grows.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_user_kind_created", ["user_id", "kind", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_user_kind_created")
