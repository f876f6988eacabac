"""Calendar sync (CalDAV): calendar accounts, calendars, events, occurrences, attendees

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:35:00

A CalDAV login per user (``calendar_accounts``), its calendars with their sync token,
events once per workspace (UID + RECURRENCE-ID) with their occurrences in the sync window
and attendees, where each lives in a user's calendar (``event_placements``), and the
meetings on contact, lead and deal timelines (``event_links``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("workspace_id", _Id, nullable=False),
        sa.Column("uid", sa.String(length=500), nullable=False),
        sa.Column("recurrence_id", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("organizer_email", sa.String(length=320), nullable=True),
        sa.Column("organizer_name", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("tzid", sa.String(length=100), nullable=True),
        sa.Column("rrule", sa.Text(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("created_by", _Id, nullable=True),
        sa.Column("ics", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_events_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint(
            "workspace_id",
            "uid",
            "recurrence_id",
            name=op.f("uq_events_workspace_id_uid_recurrence_id"),
        ),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_created_by"), ["created_by"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_workspace_id"), ["workspace_id"], unique=False)
        batch_op.create_index(
            "ix_events_ws_start", ["workspace_id", "starts_at", "id"], unique=False
        )

    op.create_table(
        "calendar_accounts",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("workspace_id", _Id, nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("mail_account_id", _Id, nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("preset", sa.String(length=20), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("auto_create", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_code", sa.String(length=40), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mail_account_id"],
            ["mail_accounts.id"],
            name=op.f("fk_calendar_accounts_mail_account_id_mail_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_calendar_accounts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_calendar_accounts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_accounts")),
    )
    with op.batch_alter_table("calendar_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_accounts_mail_account_id"), ["mail_account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_calendar_accounts_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_calendar_accounts_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "event_attendees",
        sa.Column("event_id", _Id, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("partstat", sa.String(length=20), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("cutype", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_attendees_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "email", name=op.f("pk_event_attendees")),
    )
    op.create_table(
        "event_links",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("workspace_id", _Id, nullable=False),
        sa.Column("event_id", _Id, nullable=False),
        sa.Column("subject_type", sa.String(length=10), nullable=False),
        sa.Column("subject_id", _Id, nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_links_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_links_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_links")),
        sa.UniqueConstraint(
            "event_id",
            "subject_type",
            "subject_id",
            name=op.f("uq_event_links_event_id_subject_type_subject_id"),
        ),
    )
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_links_event_id"), ["event_id"], unique=False)
        batch_op.create_index(
            "ix_event_links_subject_start",
            ["workspace_id", "subject_type", "subject_id", "starts_at", "event_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_event_links_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "event_occurrences",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("event_id", _Id, nullable=False),
        sa.Column("recurrence_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("tzid", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_occurrences_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_occurrences")),
        sa.UniqueConstraint(
            "event_id", "recurrence_id", name=op.f("uq_event_occurrences_event_id_recurrence_id")
        ),
    )
    with op.batch_alter_table("event_occurrences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_occurrences_event_id"), ["event_id"], unique=False
        )
        batch_op.create_index("ix_event_occurrences_start", ["starts_at", "event_id"], unique=False)

    op.create_table(
        "calendars",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("account_id", _Id, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("sync_token", sa.String(length=1000), nullable=True),
        sa.Column("ctag", sa.String(length=500), nullable=True),
        sa.Column("synced", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["calendar_accounts.id"],
            name=op.f("fk_calendars_account_id_calendar_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendars")),
        sa.UniqueConstraint("account_id", "url", name=op.f("uq_calendars_account_id_url")),
    )
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calendars_account_id"), ["account_id"], unique=False)

    op.create_table(
        "event_placements",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("calendar_id", _Id, nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("event_id", _Id, nullable=True),
        sa.Column("href", sa.String(length=2000), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_event_placements_calendar_id_calendars"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_placements_event_id_events"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_event_placements_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_placements")),
        sa.UniqueConstraint(
            "calendar_id", "href", name=op.f("uq_event_placements_calendar_id_href")
        ),
    )
    with op.batch_alter_table("event_placements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_placements_calendar_id"), ["calendar_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_event_placements_event_id"), ["event_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_event_placements_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event_placements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_placements_user_id"))
        batch_op.drop_index(batch_op.f("ix_event_placements_event_id"))
        batch_op.drop_index(batch_op.f("ix_event_placements_calendar_id"))

    op.drop_table("event_placements")
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendars_account_id"))

    op.drop_table("calendars")
    with op.batch_alter_table("event_occurrences", schema=None) as batch_op:
        batch_op.drop_index("ix_event_occurrences_start")
        batch_op.drop_index(batch_op.f("ix_event_occurrences_event_id"))

    op.drop_table("event_occurrences")
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_links_workspace_id"))
        batch_op.drop_index("ix_event_links_subject_start")
        batch_op.drop_index(batch_op.f("ix_event_links_event_id"))

    op.drop_table("event_links")
    op.drop_table("event_attendees")
    with op.batch_alter_table("calendar_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_accounts_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_accounts_user_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_accounts_mail_account_id"))

    op.drop_table("calendar_accounts")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_ws_start")
        batch_op.drop_index(batch_op.f("ix_events_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_events_created_by"))

    op.drop_table("events")
