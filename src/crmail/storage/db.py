"""Engine, sessions and the single writer.

SQLite allows one writer at a time; rather than let every coroutine fight over the
write lock (and hit ``database is locked``), every write goes through one thread,
as datasette does. PostgreSQL gets the same path: it keeps write ordering simple
and the sync engine's transactions are short.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crmail.errors import InvalidInput, StorageError
from crmail.storage.files import protect_sqlite_files, sqlite_file

T = TypeVar("T")

#: what a refused write on a full disk means for the caller (the API's hint, the CLI's line)
DISK_FULL_HINT = (
    "nothing was stored; once space is freed, send the same request again "
    "(sync and queued sends resume by themselves)"
)

#: seconds a statement waits for a lock another connection holds before it fails
LOCK_TIMEOUT = 30.0


def make_engine(url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": lock_timeout}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while the sync engine writes; NORMAL is durable
            # against process crashes (the case we promise), and fast.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
            cur.close()

        event.listen(engine, "before_cursor_execute", _refuse_nul_text)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        # Bounded like SQLite's busy timeout: a lock held elsewhere is an error to report
        # and retry, not a writer thread blocked for good.
        connect_args={"options": f"-c lock_timeout={int(lock_timeout * 1000)}"},
    )


def _refuse_nul_text(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> None:
    """SQLite would store text with NUL; PostgreSQL refuses it. Refuse it on both, alike."""
    if statement.startswith(("INSERT", "UPDATE")) and any(
        isinstance(v, str) and "\x00" in v for v in _bound_values(parameters)
    ):
        raise InvalidInput("a value cannot be stored: text cannot contain NUL (0x00) characters")


def _bound_values(parameters: Any) -> Iterator[object]:
    """Every value of one statement's parameters, whatever their shape: one row (tuple or
    dict), many rows (executemany), or insertmanyvalues' batch as one flat row."""
    for item in (parameters,) if isinstance(parameters, dict) else parameters:
        if isinstance(item, dict):
            yield from item.values()
        elif isinstance(item, (list, tuple)):
            yield from item
        else:
            yield item


#: free bytes under which a disk I/O error is taken for a full disk: SQLite needs whole
#: pages (and its shared-memory index) at once, so "almost full" fails alike
_NEARLY_FULL = 1 << 20


def storage_error(exc: Exception, where: Path | None = None) -> StorageError:
    """The database's refusal as a :class:`StorageError` an operator can act on.

    ``where`` is the SQLite database file, if any: SQLite reports a full disk met while
    sizing its shared-memory index or log only as "disk I/O error", so the free space
    beside the file decides which of the two it was."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig).strip() or type(orig).__name__
    first = text.splitlines()[0]
    low = text.lower()
    if isinstance(exc, IntegrityError):
        return StorageError(
            f"database constraint conflict ({first}) — most likely a concurrent change; try again"
        )
    if (
        "disk is full" in low
        or "no space left" in low
        or "disk full" in low
        or ("disk i/o error" in low and where is not None and _nearly_full(where))
    ):
        return StorageError(
            "database disk is full — free space where the database lives, then try again",
            hint=DISK_FULL_HINT,
        )
    if any(
        w in low for w in ("database is locked", "database is busy", "lock timeout", "deadlock")
    ):
        return StorageError(
            "database is locked — another process holds a lock on it; try again once it is released"
        )
    return StorageError(f"database error: {first}")


def _nearly_full(database_file: Path) -> bool:
    try:
        st = os.statvfs(database_file.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL


@contextmanager
def translated_errors(where: Path | None = None) -> Iterator[None]:
    """Database refusals become :class:`StorageError` (the CLI prints one line, the API
    answers 503, sync workers record the reason and retry); bugs stay what they are.
    ``where``: the SQLite database file, to tell a full disk from a failing one."""
    try:
        yield
    except (OperationalError, IntegrityError, sqlite3.OperationalError) as exc:
        raise storage_error(exc, where) from exc
    except DataError as exc:
        # A value the database cannot hold (NUL in text on PostgreSQL, a number past its
        # column): bad input, said as such (422), not a crash.
        first = (str(exc.orig).strip() or "invalid value").splitlines()[0]
        raise InvalidInput(f"a value cannot be stored: {first}") from exc


class Database:
    """Owns the engine; hands out read sessions and runs writes on the writer thread."""

    def __init__(self, url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.url = url
        #: the SQLite database file (None on PostgreSQL)
        self.file = sqlite_file(url)
        protect_sqlite_files(url)
        self.engine = make_engine(url, lock_timeout=lock_timeout)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db-writer")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions.begin() as s:
            yield s

    def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction, synchronously (API handlers, CLI, tests)."""
        with translated_errors(self.file), self.session() as s:
            return fn(s)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction on the writer thread; returns once committed."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.run, fn)

    async def read(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.run, fn)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()
