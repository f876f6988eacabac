"""A few seconds' memory of which user an API token belongs to.

Checking a token costs a session and two statements, which on a list page is as much
as the page's own SQL. A token seen in the last :data:`TTL` seconds is taken as still
good, with these bounds on how late a change is seen:

- in this process, a commit that changes any token or user row (revoke, rotate, disable,
  a new role) empties the cache as it commits: the next request checks the database;
- in another process (the CLI's ``user tokens revoke``, another API worker), the change
  is seen within :data:`TTL` seconds;
- a token's expiry is never passed: an entry lives no longer than the token does.

A lookup that read the database before such a commit and stores its answer after it
is dropped (the generation it started under has changed), so a revoked token cannot be
put back by a request that was in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from crmail.storage.models import ApiToken, User, utcnow
from crmail.storage.tokens import Checked, digest

T = TypeVar("T")

#: seconds a checked token is believed without asking the database again
TTL = 5.0
#: entries kept at most; past it the cache starts over (tokens are few per deployment)
MAX_ENTRIES = 10_000

_lock = threading.Lock()
_entries: dict[tuple[str, str], tuple[float, Any, Checked]] = {}
_generation = 0
_FLAG = "crmail.auth_changed"


def generation() -> int:
    return _generation


def get(db_key: str, token: str) -> tuple[Any, Checked] | None:
    """The cached (user, check) of ``token``, or None when it must be checked afresh."""
    entry = _entries.get((db_key, digest(token)))
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1], entry[2]


def put(
    db_key: str,
    token: str,
    user: Any,
    checked: Checked,
    started: int,
) -> None:
    """Remember a check that began at generation ``started`` (see :func:`generation`)."""
    until = time.monotonic() + TTL
    if checked.expires_at is not None:
        left = (checked.expires_at - utcnow()).total_seconds()
        until = min(until, time.monotonic() + left)
    with _lock:
        if started != _generation:
            return
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[(db_key, digest(token))] = (until, user, checked)


def mark_recorded(db_key: str, token: str) -> None:
    """The token's use is recorded: cached hits need not record it again."""
    key = (db_key, digest(token))
    with _lock:
        entry = _entries.get(key)
        if entry is not None:
            _entries[key] = (entry[0], entry[1], replace(entry[2], stale=False))


def invalidate() -> None:
    global _generation
    with _lock:
        _generation += 1
        _entries.clear()


def cached_check(
    db_key: str, token: str, check: Callable[[], tuple[T, Checked]]
) -> tuple[T, Checked]:
    """``check()``'s answer for ``token``, from the cache when fresh."""
    hit = get(db_key, token)
    if hit is not None:
        user: T = hit[0]
        return user, hit[1]
    started = _generation
    user, checked = check()
    put(db_key, token, user, checked, started)
    return user, checked


_WATCHED = (ApiToken, User)


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, _ctx: UOWTransaction) -> None:
    if any(isinstance(o, _WATCHED) for o in (*session.dirty, *session.deleted)):
        session.info[_FLAG] = True


@event.listens_for(Session, "do_orm_execute")
def _note_bulk(state: ORMExecuteState) -> None:
    if state.execution_options.get("auth_unchanged"):
        return
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ in _WATCHED:
        state.session.info[_FLAG] = True


@event.listens_for(Session, "after_commit")
def _clear_on_commit(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        invalidate()


@event.listens_for(Session, "after_rollback")
def _forget_flag(session: Session) -> None:
    session.info.pop(_FLAG, None)
