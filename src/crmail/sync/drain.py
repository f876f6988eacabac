"""Draining an outbox queue: the loop shared by account workers and the default sender."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from crmail.storage import outbox
from crmail.storage.db import Database

#: longest sleep between looks at the queue when nobody wakes the drainer: a safety
#: net only, queued actions wake their drain (in-process, or by NOTIFY from another)
IDLE_CHECK = 300.0


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
    await db.write(lambda s: outbox.requeue_running(s, account_id))
    while True:
        action = await db.write(lambda s: outbox.claim_next(s, account_id))
        if action is None:
            if not follow:
                return
            due = await db.read(lambda s: outbox.next_due(s, account_id))
            wait = IDLE_CHECK if due is None else (due - datetime.now(UTC)).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.01, min(wait, IDLE_CHECK)))
            wake.clear()
            continue
        await run(action)
        if on_done is not None:
            on_done()
