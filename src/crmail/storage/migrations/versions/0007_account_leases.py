"""Account leases and the sync processes' heartbeat (several crmail processes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:55:00

``account_leases``: which process syncs an account (or, for account id 0, drains the
default sending provider's queue), until when, and the epoch every fenced write checks.
``sync_processes``: the live sync processes, so each claims a fair share.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "account_leases",
        sa.Column("account_id", _Id, autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_leases")),
    )
    with op.batch_alter_table("account_leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_leases_owner"), ["owner"], unique=False)
    op.create_table(
        "sync_processes",
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_sync_processes")),
    )


def downgrade() -> None:
    op.drop_table("sync_processes")
    with op.batch_alter_table("account_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_leases_owner"))
    op.drop_table("account_leases")
