"""A teammate's Inbox reads only the owner's items others may see, in index order

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 04:00:00

A teammate's (and everyone's) Inbox walked the owner's open items in date order and
dropped the private ones (mail no timeline links and no other member has): at a million
messages the page read past thousands of hidden rows. ``inbox_items.shared`` says someone
besides the owner may see the message (on a timeline, or in another member's own mail),
and (user, shared, state, received_at, id) serves the teammate's page in order reading
only those rows. Backfilled here with the rule ``storage/item_sharing.py`` keeps.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Portable SQL (SQLite and PostgreSQL): the same four cases as storage/item_sharing.py.
_BACKFILL = """
UPDATE inbox_items SET shared = (
  EXISTS (SELECT 1 FROM timeline_entries t WHERE t.message_id = inbox_items.message_id)
  OR EXISTS (SELECT 1 FROM inbox_items o
             WHERE o.message_id = inbox_items.message_id AND o.user_id <> inbox_items.user_id)
  OR EXISTS (SELECT 1 FROM placements p JOIN mail_accounts a ON a.id = p.account_id
             WHERE p.message_id = inbox_items.message_id AND a.user_id <> inbox_items.user_id)
  OR EXISTS (SELECT 1 FROM messages m
             WHERE m.id = inbox_items.message_id AND m.sent_by_user_id IS NOT NULL
               AND m.sent_by_user_id <> inbox_items.user_id)
)
"""


def upgrade() -> None:
    with op.batch_alter_table("inbox_items") as batch_op:
        batch_op.add_column(sa.Column("shared", sa.Boolean(), nullable=True))
    op.execute(_BACKFILL)
    with op.batch_alter_table("inbox_items") as batch_op:
        batch_op.alter_column("shared", existing_type=sa.Boolean(), nullable=False)
        batch_op.create_index(
            "ix_inbox_user_shared_state", ["user_id", "shared", "state", "received_at", "id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("inbox_items") as batch_op:
        batch_op.drop_index("ix_inbox_user_shared_state")
        batch_op.drop_column("shared")
