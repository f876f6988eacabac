"""participants: no index on email

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 11:00:00

No query looks participants up by address: a message's participants are read by its id
(the primary key), and contacts are linked at arrival from the parsed envelope. The
index on ``email`` was written for every address of every imported message, keyed at
random by the correspondent, so in a big workspace each message dirtied a leaf page of
it at every commit for nothing (issue 14).
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_participants_email", table_name="participants")


def downgrade() -> None:
    op.create_index("ix_participants_email", "participants", ["email"])
