"""Run Alembic migrations from code (``crmail migrate`` and at service start)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


#: the PostgreSQL advisory lock a migration holds (any fixed number; "crml")
MIGRATION_LOCK = 0x63726D6C


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn, _foreign_keys_off(conn), conn.begin():
        _one_migrator_at_a_time(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        _check_foreign_keys(conn)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn, _foreign_keys_off(conn), conn.begin():
        _one_migrator_at_a_time(conn)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        _check_foreign_keys(conn)


def _one_migrator_at_a_time(conn: Connection) -> None:
    """N processes starting together on PostgreSQL (every ``crmail run`` migrates at
    start) would each create the same tables; the others wait here for the first one's
    transaction, then find the schema current. Held until the migration commits."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: one process (crmail.storage.single), and its writes serialize
    # However long the first one takes: the waiters' lock timeout is for deadlocks and
    # stuck transactions, not for a migration doing its work.
    timeout = conn.exec_driver_sql("SHOW lock_timeout").scalar()
    conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    conn.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": str(timeout)})


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """On SQLite, foreign keys are off while migrating: batch mode copies a table and drops
    the old one, and dropping a table with foreign keys on runs its ON DELETE CASCADE,
    which would delete every row that points at it (a user's mail, with ``users``)."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # The pragma is ignored inside a transaction: set it before one begins.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
    try:
        yield
    finally:
        if sqlite:
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _check_foreign_keys(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
