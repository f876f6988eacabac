"""A calendar's change token is text of any length

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 04:30:00

Microsoft Graph's calendar token is its whole ``@odata.deltaLink`` (a URL whose
``$deltatoken`` alone can pass a thousand characters); ``calendars.sync_token`` was a
VARCHAR(1000), which PostgreSQL refuses to overflow: the round would never commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calendars") as batch:
        batch.alter_column(
            "sync_token", existing_type=sa.String(1000), type_=sa.Text(), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("calendars") as batch:
        batch.alter_column(
            "sync_token", existing_type=sa.Text(), type_=sa.String(1000), existing_nullable=True
        )
