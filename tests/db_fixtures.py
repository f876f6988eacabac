"""Database fixtures: the same tests run on SQLite (default) and PostgreSQL.

``CRMAIL_TEST_DB=postgres`` starts a throwaway PostgreSQL cluster for the session and
gives each test a fresh database. Tests that use a database are marked ``db``
automatically, so CI can rerun exactly those on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.domain.netpolicy import parse_networks
from crmail.services import Services
from tests.servers.postgres import Postgres

BACKEND = os.environ.get("CRMAIL_TEST_DB", "sqlite")
#: the test servers (Dovecot, SMTP, the fakes) listen on loopback, which the default
#: address policy refuses; tests of that policy set their own
LOOPBACK = parse_networks("127.0.0.0/8, ::1", setting="tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "db_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres | None]:
    if BACKEND != "postgres":
        yield None
        return
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(tmp_path: Path, postgres: Postgres | None) -> str:
    if postgres is not None:
        return postgres.new_database()
    return f"sqlite:///{tmp_path / 'crmail.db'}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        secret_keys=(new_key(),),
        mail_allowed_networks=LOOPBACK,
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.open(settings)
    try:
        yield svc
    finally:
        svc.close()


def database_bytes(services: Services) -> bytes:
    """Everything the database holds, as bytes: the files (and WAL) on SQLite, every row on
    PostgreSQL. For "no secret in clear" tests."""
    if services.db.is_sqlite:
        path = services.settings.sqlite_path
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(p.read_bytes() for p in files if p.exists())
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(services.db.engine)
    with services.db.engine.connect() as conn:
        return b"\n".join(
            repr(tuple(r)).encode() for t in meta.sorted_tables for r in conn.execute(t.select())
        )
