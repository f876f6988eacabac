"""One process at a time runs the calendar rounds.

Calendar accounts have no per-account lease (mail accounts do, see
:mod:`crmail.storage.leases`): on PostgreSQL the calendar loop of every ``sync``
process asks for one session advisory lock on a connection it keeps; the holder syncs,
the others wait and try again each interval. A holder that dies loses its connection,
and with it the lock. SQLite serves one process, which always holds it.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection, text

from crmail.errors import StorageError
from crmail.storage.db import Database

#: the advisory lock's key ("crmail calendar loop")
LOCK_KEY = 0x63616C656E646172 & 0x7FFFFFFFFFFFFFFF


class CalendarLoopLock:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        """True when this process may run the rounds (held until :meth:`release`)."""
        if self.db.is_sqlite:
            return True
        try:
            if self._conn is not None:
                self._conn.execute(text("select 1"))  # still connected, so still held
                return True
            conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.scalar(text("select pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}):
                self._conn = conn
                return True
            conn.close()
            return False
        except Exception as exc:  # a dropped connection: the lock went with it
            self.release()
            raise StorageError(f"calendar loop lock: {type(exc).__name__}") from None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Dropped, not returned to the pool: a pooled connection would keep the lock.
            with contextlib.suppress(Exception):  # closing a broken connection
                conn.invalidate()
                conn.close()
