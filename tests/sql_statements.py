"""Counting what a piece of code asks the database: deterministic, unlike timings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from crmail.services import Services


@contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """Every SQL statement the services' engine runs inside the block, in order."""
    seen: list[str] = []

    def grab(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(services.db.engine, "before_cursor_execute", grab)
