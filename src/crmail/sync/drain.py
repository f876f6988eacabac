"""Draining an outbox queue: the loop shared by account workers and the default sender,
and the run of one account's action with its failure recorded (:func:`run_outbox_action`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from crmail.errors import AuthFailed, CrmailError, InvalidInput, ProviderError, StorageError
from crmail.storage import actions, outbox
from crmail.storage.db import Database

#: longest sleep between looks at the queue when nobody wakes the drainer: a safety
#: net only, queued actions wake their drain (in-process, or by NOTIFY from another)
IDLE_CHECK = 300.0

log = logging.getLogger(__name__)


async def drain_outbox(
    db: Database,
    account_id: int | None,
    run: Callable[[outbox.Action], Awaitable[None]],
    wake: asyncio.Event,
    *,
    follow: bool = True,
    on_done: Callable[[], None] | None = None,
) -> None:
    """Run the queue's actions one at a time, in order, until cancelled.

    ``run`` records an action's outcome itself (done, or failed with backoff). With
    ``follow=False`` the loop returns once nothing is due.
    """
    # One transaction per look: the recovery of what a dead process left running, the
    # claim, and when nothing is due now, when the next action is (a thousand accounts
    # starting together made three each).
    recover = True
    while True:
        action, due = await db.write(
            functools.partial(_claim_or_next_due, account_id=account_id, recover=recover)
        )
        recover = False
        if action is None:
            if not follow:
                return
            wait = IDLE_CHECK if due is None else (due - datetime.now(UTC)).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.01, min(wait, IDLE_CHECK)))
            wake.clear()
            continue
        await run(action)
        if on_done is not None:
            on_done()


def _claim_or_next_due(
    s: Session, *, account_id: int | None, recover: bool
) -> tuple[outbox.Action | None, datetime | None]:
    if recover:
        outbox.requeue_running(s, account_id)
    action = outbox.claim_next(s, account_id)
    return action, None if action is not None else outbox.next_due(s, account_id)


async def run_outbox_action(
    db: Database,
    account_id: int,
    action: outbox.Action,
    sync: Callable[[outbox.Action], Awaitable[None]] | None,
    send: Callable[[outbox.Action], Awaitable[None]],
    *,
    fatal: Callable[[outbox.Action, CrmailError], bool] = lambda _, exc: isinstance(
        exc, AuthFailed
    ),
) -> None:
    """Run one outbox action; a failure is recorded on it (retried later when the
    provider's refusal was transient) and the drain goes on, except after a ``fatal``
    one (by default an auth failure, which pauses the account), raised on."""
    try:
        if action.kind == "sync" and sync is not None:
            await sync(action)
        elif action.kind == "send":
            await send(action)
        else:
            raise InvalidInput(f"unknown action kind {action.kind!r}")
    except StorageError:
        raise  # not the action's fault: requeued when the drain starts again
    except CrmailError as exc:
        retryable = isinstance(exc, ProviderError) and exc.retryable
        message = exc.message
        if action.kind == "sync":
            await db.write(
                lambda s: actions.sync_failed(s, action.id, message, retryable=retryable)
            )
        else:
            await db.write(lambda s: outbox.fail(s, action.id, message, retryable=retryable))
        log.warning("account %s: action %s failed: %s", account_id, action.id, message)
        if fatal(action, exc):
            raise
