"""Several processes starting together on a fresh PostgreSQL migrate it once: each
waits for the one migrating instead of racing it (they all migrate at start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crmail.storage.db import Database
from crmail.storage.migrate import current
from tests.db_fixtures import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="one process on SQLite")

STARTERS = 4


def test_processes_starting_together_migrate_a_fresh_database_once(db_url: str) -> None:
    # Separate interpreters, as N crmail processes started by systemd or compose are.
    code = (
        "import sys; from sqlalchemy import create_engine; "
        "from crmail.storage.migrate import upgrade; "
        "upgrade(create_engine(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(STARTERS)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0] * STARTERS, "\n".join(err for _, err in results)
    db = Database(db_url)
    try:
        assert current(db.engine) is not None
    finally:
        db.close()
