"""Lists in index order: the message date on timeline entries, ordering indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:45:00

Every list is read in the order of an index and paged by keyset (the last row's
ordering key and id), so a deep page costs what the first does:

- ``timeline_entries.message_date``: the message's date (its Date header, else when it
  was stored), copied on insert so a timeline is ordered without joining ``messages``;
  backfilled here. Index (workspace, subject, date, message).
- ``inbox_items``: (user, state, received_at, id) replaces (user, state, received_at),
  so PostgreSQL orders ties by id from the index too.
- ``messages``: (thread, date, id) on the date expression, for a thread's messages.
- ``contacts``, ``leads``, ``deals``: (workspace, id), contacts by lead (lead, id),
  deals by status (workspace, status, id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timeline_entries") as batch_op:
        batch_op.add_column(sa.Column("message_date", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE timeline_entries SET message_date = (SELECT coalesce(m.sent_at, m.received_at)"
        " FROM messages m WHERE m.id = timeline_entries.message_id)"
    )
    with op.batch_alter_table("timeline_entries") as batch_op:
        batch_op.alter_column(
            "message_date", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_index("ix_timeline_subject")
        batch_op.create_index(
            "ix_timeline_subject_date",
            ["workspace_id", "subject_type", "subject_id", "message_date", "message_id"],
        )
    with op.batch_alter_table("inbox_items") as batch_op:
        batch_op.drop_index("ix_inbox_user_state")
        batch_op.create_index(
            "ix_inbox_user_state_received", ["user_id", "state", "received_at", "id"]
        )
    op.create_index(
        "ix_messages_thread_date",
        "messages",
        ["thread_id", sa.text("coalesce(sent_at, received_at)"), "id"],
    )
    op.create_index("ix_contacts_ws_id", "contacts", ["workspace_id", "id"])
    op.create_index("ix_contacts_lead_order", "contacts", ["lead_id", "id"])
    op.create_index("ix_leads_ws_id", "leads", ["workspace_id", "id"])
    op.create_index("ix_deals_ws_id", "deals", ["workspace_id", "id"])
    op.create_index("ix_deals_ws_status_id", "deals", ["workspace_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_deals_ws_status_id", table_name="deals")
    op.drop_index("ix_deals_ws_id", table_name="deals")
    op.drop_index("ix_leads_ws_id", table_name="leads")
    op.drop_index("ix_contacts_lead_order", table_name="contacts")
    op.drop_index("ix_contacts_ws_id", table_name="contacts")
    op.drop_index("ix_messages_thread_date", table_name="messages")
    with op.batch_alter_table("inbox_items") as batch_op:
        batch_op.drop_index("ix_inbox_user_state_received")
        batch_op.create_index("ix_inbox_user_state", ["user_id", "state", "received_at"])
    with op.batch_alter_table("timeline_entries") as batch_op:
        batch_op.drop_index("ix_timeline_subject_date")
        batch_op.create_index("ix_timeline_subject", ["workspace_id", "subject_type", "subject_id"])
        batch_op.drop_column("message_date")
