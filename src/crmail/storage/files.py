"""The files crmail keeps on disk are its owner's alone.

The SQLite database holds every synced email and the sealed mailbox credentials, and the
data dir may hold the secret key that unseals them: nobody else on the machine should
read them, whatever the umask of the shell that started crmail.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

#: what SQLite keeps beside the database file
_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; one created here is 0700."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    if u.database.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(u.database)


def protect_sqlite_files(url: str) -> None:
    """Create the database file 0600 before SQLite does, and tighten existing files.

    SQLite creates the WAL, shared-memory and journal files with the permissions of the
    database file, so they follow. Files of an older install (0644) are tightened.
    """
    path = sqlite_file(url)
    if path is None:
        return
    private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for p in (path, *(path.with_name(path.name + c) for c in _COMPANIONS)):
        # Another user's file (a read-only copy) is not ours to change.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(p, 0o600)
