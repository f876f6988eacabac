"""Who sent a message from the CRM; an index for the per-user sending rate limit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:20:00

``messages.sent_by_user_id`` lets the author read a message sent from the CRM from the
moment it is queued, in every mode (1-way mode never syncs the Sent copy back), and is
filled for earlier sends from their outbox actions. Each send counts the user's "send"
actions of the last hour; the index keeps that a range read however large the outbox
grows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_user_kind_created", ["user_id", "kind", "created_at"], unique=False
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_by_user_id", _Id, nullable=True))
        batch_op.create_index(
            batch_op.f("ix_messages_sent_by_user_id"), ["sent_by_user_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_sent_by_user_id_users"),
            "users",
            ["sent_by_user_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.execute(
        "UPDATE messages SET sent_by_user_id = ("
        " SELECT MAX(outbox.user_id) FROM outbox"
        " WHERE outbox.message_id = messages.id AND outbox.kind = 'send'"
        ") WHERE origin = 'crm'"
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_messages_sent_by_user_id_users"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_messages_sent_by_user_id"))
        batch_op.drop_column("sent_by_user_id")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_user_kind_created")
