"""Microsoft Graph push: each account's change-notification subscription

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 02:10:00

``graph_subscriptions``: one row per Graph account with push on: Graph's subscription
id (what each notification names), its resource and notification URL, the sealed
clientState every notification must carry, its expiry (renewed before), and whether
Graph asked for reauthorization.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "graph_subscriptions",
        sa.Column("account_id", _Id, autoincrement=False, nullable=False),
        sa.Column("subscription_id", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("notification_url", sa.Text(), nullable=False),
        sa.Column("client_state", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renew_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mail_accounts.id"],
            name=op.f("fk_graph_subscriptions_account_id_mail_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_graph_subscriptions")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_graph_subscriptions_subscription_id")),
    )


def downgrade() -> None:
    op.drop_table("graph_subscriptions")
