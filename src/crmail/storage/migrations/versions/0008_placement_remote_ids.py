"""The provider's own ids on placements (Gmail API accounts)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:10:00

``placements.remote_id``: the provider's id of a copy (Gmail's message id), unique per
folder; ``placements.remote_thread``: its conversation id (Gmail's threadId). Both are
None on IMAP, whose copies are named by ``uid``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("remote_thread", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_placements_folder_id_remote_id"), ["folder_id", "remote_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_placements_folder_id_remote_id"), type_="unique")
        batch_op.drop_column("remote_thread")
        batch_op.drop_column("remote_id")
