"""Many rows in one driver call, for the sync engine's hot path.

An initial import writes about ten rows per message, thousands of messages a second,
through one writer. SQLAlchemy's per-row work (ORM bulk bookkeeping, compiling each
parameter set) cost more than the database itself. Here a table's INSERT is compiled
once per dialect and column set; values go through the columns' own bind processors,
so dates, JSON and booleans are stored exactly as SQLAlchemy stores them elsewhere;
Python-side column defaults are applied as the ORM would; and the rows go in inside the
session's transaction: through a binary ``COPY ... FROM STDIN`` on PostgreSQL (one
stream; a pipelined INSERT per row cost the server about twice as much, and text COPY
sends a message's raw bytes hex-encoded, twice their size), through the driver's
``executemany`` on SQLite (a loop in C, in process).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from crmail.storage.models import Base

Row = Mapping[str, Any]
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: parameter names in the order the driver takes them (positional dialects)
    order: tuple[str, ...]
    positional: bool
    processors: dict[str, Processor]
    #: columns the rows leave out that have a Python-side default: name -> default
    defaults: dict[str, Any]
    #: PostgreSQL: the COPY statement and its columns' types, in the order of ``names``
    copy_sql: str | None
    copy_types: tuple[str, ...]
    names: tuple[str, ...]


def insert_rows(s: Session, model: type[Base], rows: Sequence[Row]) -> None:
    """INSERT ``rows`` (all with the same keys) into ``model``'s table in one call."""
    if not rows:
        return
    conn = s.connection()
    table = model.__table__
    assert isinstance(table, Table)
    plan = _plan(conn.dialect, table, tuple(rows[0]))
    # Defaults are the same for every row of the call: converted once, not per row.
    extra = {}
    for k, d in plan.defaults.items():
        value = d.arg(None) if d.is_callable else d.arg
        convert = plan.processors[k]
        extra[k] = convert(value) if convert is not None else value
    params: list[Any] = []
    if plan.copy_sql is not None:
        _copy(conn.connection.cursor(), plan, rows, extra)
        return
    if plan.positional:
        converts = [(i, plan.processors[k]) for i, k in enumerate(plan.order) if k not in extra]
        converts = [(i, p) for i, p in converts if p is not None]
        for r in rows:
            full = {**extra, **r} if extra else r
            values = [full[k] for k in plan.order]
            for i, p in converts:
                values[i] = p(values[i])  # type: ignore[misc]
            params.append(values)
    else:
        named = [(k, p) for k, p in plan.processors.items() if p is not None and k not in extra]
        for r in rows:
            full = {**extra, **r}
            for k, p in named:
                full[k] = p(full[k])
            params.append(full)
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(plan.sql, params)
    finally:
        cursor.close()


def _copy(cursor: Any, plan: _Plan, rows: Sequence[Row], extra: dict[str, Any]) -> None:
    converts = [(i, plan.processors[k]) for i, k in enumerate(plan.names) if k not in extra]
    converts = [(i, p) for i, p in converts if p is not None]
    try:
        with cursor.copy(plan.copy_sql) as copy:
            copy.set_types(list(plan.copy_types))
            for r in rows:
                full = {**extra, **r} if extra else r
                values = [full[k] for k in plan.names]
                for i, p in converts:
                    values[i] = p(values[i])  # type: ignore[misc]
                copy.write_row(values)
    finally:
        cursor.close()


@lru_cache(maxsize=128)
def _plan(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> _Plan:
    defaults = {
        c.key: c.default
        for c in table.columns
        if c.key not in keys
        and c.default is not None
        and (c.default.is_scalar or c.default.is_callable)
    }
    names = (*keys, *defaults)
    compiled = insert(table).compile(dialect=dialect, column_keys=list(names), for_executemany=True)
    processors: dict[str, Processor] = {
        k: table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in names
    }
    order = tuple(compiled.positiontup or ())
    if dialect.positional:
        assert set(order) == set(names), (order, names)
    copy_sql: str | None = None
    copy_types: tuple[str, ...] = ()
    if dialect.name == "postgresql":
        quote = dialect.identifier_preparer.quote
        columns = ", ".join(quote(table.c[k].name) for k in names)
        target = dialect.identifier_preparer.format_table(table)
        copy_sql = f"COPY {target} ({columns}) FROM STDIN (FORMAT BINARY)"
        # Binary COPY needs each column's type: "VARCHAR(200)" -> "varchar", and so on
        # (psycopg knows PostgreSQL's type names, "timestamp with time zone" included).
        copy_types = tuple(
            table.c[k].type.dialect_impl(dialect).compile(dialect=dialect).split("(")[0].lower()
            for k in names
        )
    return _Plan(
        compiled.string,
        order,
        dialect.positional,
        processors,
        defaults,
        copy_sql,
        copy_types,
        names,
    )
