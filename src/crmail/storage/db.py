"""Engine, sessions and the single writer.

SQLite allows one writer at a time; rather than let every coroutine fight over the
write lock (and hit ``database is locked``), every write goes through one thread,
as datasette does. PostgreSQL gets the same path: it keeps write ordering simple
and the sync engine's transactions are short.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from crmail.storage.files import protect_sqlite_files

T = TypeVar("T")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while the sync engine writes; NORMAL is durable
            # against process crashes (the case we promise), and fast.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Database:
    """Owns the engine; hands out read sessions and runs writes on the writer thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        protect_sqlite_files(url)
        self.engine = make_engine(url)
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
        with self.session() as s:
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
