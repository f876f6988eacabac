"""The CLI on a database it cannot write: one clear line and exit code 1, no traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import accounts
from tests.factories import new_world


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process's write transaction, held open."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def crmail(tmp_path: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRMAIL_DATA_DIR": str(tmp_path),
        "CRMAIL_DATABASE_URL": f"sqlite:///{db}",
        "CRMAIL_SECRET_KEY": KEY,
        "CRMAIL_DB_LOCK_TIMEOUT": "0.2",
    }
    return subprocess.run(
        [sys.executable, "-m", "crmail.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


KEY = new_key()


def test_migrate_on_a_locked_database_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    with write_lock(db):
        proc = crmail(tmp_path, db, "migrate")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("error: database is locked — "), proc.stderr
    # Once the lock is gone the same command works.
    ok = crmail(tmp_path, db, "migrate")
    assert ok.returncode == 0, ok.stderr


def test_sync_on_a_locked_database_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "crmail.db"
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}", secret_keys=(KEY,))
    services = Services.open(settings)
    world = new_world(services)
    me = world.user("me@example.test")
    account = services.db.run(
        lambda s: accounts.create_account(
            s,
            workspace_id=world.workspace_id,
            user_id=me,
            email="me@example.test",
            provider="imap",
            settings={"imap_host": "127.0.0.1", "imap_port": 1},
            secret=services.box.seal({"password": "pw"}),
        )
    )
    services.close()
    with write_lock(db):
        proc = crmail(tmp_path, db, "sync", str(account))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("error: database is locked — "), proc.stderr
