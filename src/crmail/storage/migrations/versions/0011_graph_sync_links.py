"""Microsoft Graph sync: a folder's delta link; room for Graph's long ids

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:20:00

``folders.sync_link``: the folder's Graph delta link (or, while its first round runs,
the next page's link), stored with the batch it follows. Graph's immutable message ids
and conversation ids run to about 150 characters, so ``placements.remote_id`` and
``remote_thread`` widen from 64 to 255.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sync_link", sa.Text(), nullable=True))
    with op.batch_alter_table("placements", schema=None) as batch_op:
        for column in ("remote_id", "remote_thread"):
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=64),
                type_=sa.String(length=255),
                existing_nullable=True,
            )


def downgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        for column in ("remote_id", "remote_thread"):
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=255),
                type_=sa.String(length=64),
                existing_nullable=True,
            )
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.drop_column("sync_link")
