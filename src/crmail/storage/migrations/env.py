"""Alembic environment: the connection is handed in by crmail.storage.migrate."""

from __future__ import annotations

from alembic import context

from crmail.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand
    from crmail.storage.db import make_engine

    connection = make_engine(config.get_main_option("sqlalchemy.url") or "").connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies tables
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
