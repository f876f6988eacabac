"""A size-limited tmpfs to hold crmail's data directory, filled and freed on demand.

Filling writes a ballast file until the kernel answers ENOSPC; freeing deletes it. Mounting
needs root (or CAP_SYS_ADMIN): the fixture skips, saying so, where that is not allowed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

#: big enough for a migrated database and a few hundred messages, small enough to fill fast
SIZE = "24m"


class SmallDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"

    @classmethod
    def mount(cls, where: Path) -> SmallDisk:
        where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PermissionError(done.stderr.strip() or f"mount exited {done.returncode}")
        return cls(where)

    def unmount(self) -> None:
        # lazy: a connection the test left open must not keep the mount busy
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True, check=False)

    def fill(self) -> None:
        """Leave no byte free. SQLite reuses its write-ahead log from the start after a
        checkpoint, so the log is truncated first: the next write then needs new space."""
        db = self.root / "crmail.db"
        if db.exists():
            conn = sqlite3.connect(db, timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
                block = b"\0" * chunk
                try:
                    while True:
                        os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def integrity(self) -> str:
        """SQLite's own check of the database file (and its log): "ok" when sound."""
        conn = sqlite3.connect(self.root / "crmail.db", timeout=30)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            conn.close()
