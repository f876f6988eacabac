"""Set-based thread reads and writes for an import batch: one statement per batch.

Threading a batch used to ask the database once per reply found only by its subject
and once per existing thread whose last-message time moved. SQLite answers such a
statement with a function call; PostgreSQL with a network round trip, which made the
import there several times slower than on SQLite. Here every lookup of a batch is one
statement, and every time update one pipelined ``executemany``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.orm import Session

from crmail.domain.identity import key_range
from crmail.storage.models import Thread

#: A reply found only by its subject must be this close in time to join a thread.
SUBJECT_THREAD_WINDOW = timedelta(days=30)

# The oldest thread (lowest id) of the subject whose last message is within the window
# of each lookup's date, sought through ix_threads_ws_subject. A join grouped by lookup,
# not a correlated ``ORDER BY id LIMIT 1`` (or min) per lookup: SQLite answers that by
# walking the workspace's threads in id order. The lookups come in as arrays
# (PostgreSQL) or a JSON array (SQLite): one statement text whatever the batch.
_POSTGRES = text(
    """
    SELECT q.i, min(t.id)
    FROM unnest(CAST(:k AS varchar[]), CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[]))
         WITH ORDINALITY AS q(k, lo, hi, i)
    JOIN threads t ON t.workspace_id = :ws AND t.subject_key = q.k
         AND t.last_message_at >= q.lo AND t.last_message_at <= q.hi
    GROUP BY q.i
    """
)
_SQLITE = text(
    """
    SELECT q.key + 1, min(t.id)
    FROM json_each(:lookups) AS q
    JOIN threads t ON t.workspace_id = :ws AND t.subject_key = json_extract(q.value, '$[0]')
         AND t.last_message_at >= json_extract(q.value, '$[1]')
         AND t.last_message_at <= json_extract(q.value, '$[2]')
    GROUP BY q.key
    """
)


# Messages by Message-ID, through the unique (workspace, dedup key) index: a key starts
# with its Message-ID's digest (crmail.domain.identity), so each Message-ID is a range
# of keys; the Message-ID itself is compared too. Lookups as arrays or a JSON array, as
# above. The lookups drive (SQLite's CROSS JOIN; PostgreSQL's LATERAL, fenced by OFFSET 0
# so it is not flattened back into a join): with a plain join on ranges both planners
# may walk the workspace's messages and probe the lookups for each.
_BY_MSGID_POSTGRES = text(
    """
    SELECT m.message_id, m.thread_id
    FROM unnest(CAST(:lo AS varchar[]), CAST(:hi AS varchar[]), CAST(:mid AS varchar[]))
         AS q(lo, hi, mid)
    CROSS JOIN LATERAL (
        SELECT message_id, thread_id FROM messages
        WHERE workspace_id = :ws AND dedup_key >= q.lo AND dedup_key < q.hi
              AND message_id = q.mid
        OFFSET 0
    ) AS m
    """
)
_BY_MSGID_SQLITE = text(
    """
    SELECT m.message_id, m.thread_id
    FROM json_each(:lookups) AS q
    CROSS JOIN messages m ON m.workspace_id = :ws
         AND m.dedup_key >= json_extract(q.value, '$[0]')
         AND m.dedup_key < json_extract(q.value, '$[1]')
         AND m.message_id = json_extract(q.value, '$[2]')
    """
)


def threads_by_message_id(s: Session, ws: int, message_ids: Iterable[str]) -> dict[str, int]:
    """The thread of each stored message of the workspace with one of these Message-IDs,
    in one statement."""
    wanted = sorted(set(message_ids))
    if not wanted:
        return {}
    ranges = [key_range(mid) for mid in wanted]
    if s.get_bind().dialect.name == "postgresql":
        params: dict[str, object] = {
            "ws": ws,
            "lo": [lo for lo, _ in ranges],
            "hi": [hi for _, hi in ranges],
            "mid": wanted,
        }
        rows = s.execute(_BY_MSGID_POSTGRES, params).all()
    else:
        packed = [[lo, hi, mid] for (lo, hi), mid in zip(ranges, wanted, strict=True)]
        rows = s.execute(_BY_MSGID_SQLITE, {"ws": ws, "lookups": json.dumps(packed)}).all()
    return {mid: tid for mid, tid in rows}


def threads_by_subject(
    s: Session, ws: int, lookups: Sequence[tuple[str, datetime]]
) -> list[int | None]:
    """For each (subject key, date): the thread a reply with that subject and date joins
    by subject alone, or None."""
    if not lookups:
        return []
    dialect = s.get_bind().dialect
    lo = [when - SUBJECT_THREAD_WINDOW for _, when in lookups]
    hi = [when + SUBJECT_THREAD_WINDOW for _, when in lookups]
    if dialect.name == "postgresql":
        rows = s.execute(
            _POSTGRES,
            {
                "ws": ws,
                "k": [key for key, _ in lookups],
                "lo": lo,
                "hi": hi,
            },
        ).all()
    else:
        # Dates as SQLite stores them (the column type's own conversion), so the text
        # comparison inside SQLite orders them as the index does.
        to_db = Thread.__table__.c.last_message_at.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        assert to_db is not None
        packed = [[key, to_db(a), to_db(b)] for (key, _), a, b in zip(lookups, lo, hi, strict=True)]
        rows = s.execute(_SQLITE, {"ws": ws, "lookups": json.dumps(packed)}).all()
    found: list[int | None] = [None] * len(lookups)
    # Both number the lookups from 1 (ORDINALITY; json_each's key + 1).
    for i, tid in rows:
        found[int(i) - 1] = tid
    return found


def advance_last_message(s: Session, latest: Mapping[int, datetime]) -> None:
    """Move each thread's last-message time forward to ``latest[thread]`` (never back)."""
    if not latest:
        return
    t = Thread.__table__
    assert isinstance(t, Table)
    stmt = (
        update(t)
        .where(
            t.c.id == bindparam("tid"),
            t.c.last_message_at.is_(None) | (t.c.last_message_at < bindparam("at")),
        )
        .values(last_message_at=bindparam("at"))
    )
    # Core executemany: psycopg pipelines it (one round trip), sqlite3 loops in C.
    s.connection().execute(stmt, [{"tid": tid, "at": at} for tid, at in sorted(latest.items())])
