"""API tokens of their own (named, revocable, expiring) and disabled users

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:05:00

Each user's one token (``users.token_hash``) becomes a row of ``api_tokens`` named
"initial", so tokens handed out before keep working; the column goes away.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) "
        "SELECT id, 'initial', token_hash, '', created_at FROM users "
        "WHERE token_hash IS NOT NULL"
    )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_users_token_hash"), type_="unique")
        batch_op.drop_column("token_hash")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_hash", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_users_token_hash"), ["token_hash"])
        batch_op.drop_column("disabled_at")

    # Back to one token per user: the oldest one still usable.
    op.execute(
        "UPDATE users SET token_hash = ("
        " SELECT t.token_hash FROM api_tokens t"
        " WHERE t.user_id = users.id AND t.revoked_at IS NULL"
        " ORDER BY t.id LIMIT 1)"
    )

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
