"""One process per SQLite file.

SQLite serves one process well and several badly: two sync services on one file would
each sync every account (no leases can be trusted without row locks). ``crmail run``
and ``crmail sync`` hold an exclusive lock on ``<database>.lock`` for their lifetime;
a second process is refused with a clear message. The lock is the kernel's (flock), so
it goes away with the process however it ends; the file itself may stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from crmail.errors import CrmailError


class DatabaseInUse(CrmailError):
    """Another crmail process has the SQLite database."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases or in-memory ones."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


@contextlib.contextmanager
def only_process(url: str) -> Iterator[None]:
    """Hold the SQLite file for this process, or raise :class:`DatabaseInUse`."""
    path = sqlite_file(url)
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DatabaseInUse(
                f"another crmail process is using {path} (pid {holder}); SQLite serves one "
                "process — use PostgreSQL to run several",
                hint="stop the other process, or set CRMAIL_DATABASE_URL to a PostgreSQL "
                "database (docs/operations.md, Running several processes)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
