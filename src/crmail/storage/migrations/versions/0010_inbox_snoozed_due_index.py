"""The Inbox finds a user's snoozed items whose time has come by their time

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 01:55:00

An Inbox page reads due-snoozed items (not yet woken by the waker) beside the open ones.
Read in received_at order, that meant walking every snoozed item of the user to find the
due ones; (user, state, snooze_until) goes straight to them: the few the waker has not
reopened yet.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbox_user_snoozed_due", "inbox_items", ["user_id", "state", "snooze_until"]
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_user_snoozed_due", table_name="inbox_items")
