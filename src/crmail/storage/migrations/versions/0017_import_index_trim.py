"""messages: no index on thread_id alone

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 07:00:00

``ix_messages_thread_date`` (thread, date, id) leads with ``thread_id`` and serves every
lookup by thread, the foreign key's checks included, on both databases. The index on
``thread_id`` alone only doubled an import's writes where they are random: a reply
joins a thread anywhere in the workspace, so in a big one each reply dirtied a leaf page
of both indexes (issue 14).
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_thread_id", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_thread_id", "messages", ["thread_id"])
