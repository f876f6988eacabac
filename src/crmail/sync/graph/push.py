"""What crmail does with a POST from Microsoft Graph to ``/api/push/graph``.

The endpoint cannot be authenticated by crmail's tokens: each notification is checked
against the clientState crmail set on that subscription (sealed in the database, one
per subscription), and anything else is dropped and counted. A notification only says
*that* the mailbox changed: the owning account's worker runs a delta round, which is
the truth; a lifecycle event is recorded for the worker (renew, or create again).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from crmail.crypto import SecretBox
from crmail.providers.graph.notifications import read_notifications
from crmail.storage import graph_push
from crmail.storage.db import Database

log = logging.getLogger(__name__)

#: Graph batches notifications; without resource data each is well under 1 KB
MAX_BODY = 256 * 1024
#: subscriptions looked up per POST: a batch naming more is not from Graph
MAX_SUBSCRIPTIONS = 100


@dataclass(frozen=True, slots=True)
class Received:
    #: the accounts whose workers should look now (a delta round, the subscription)
    account_ids: list[int]
    #: entries dropped: wrong or missing clientState, unknown subscription, bad shape
    rejected: int


def _subscription_ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []  # read_notifications says why
    entries = data.get("value") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    ids = {
        e["subscriptionId"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("subscriptionId"), str)
    }
    return sorted(ids)[:MAX_SUBSCRIPTIONS]


async def receive(db: Database, box: SecretBox, body: bytes) -> Received:
    """Check and record one POST's notifications.

    :raises InvalidInput: the body is not a Graph notification batch.
    """
    ids = _subscription_ids(body)
    stored = await db.read(lambda s: graph_push.by_ids(s, ids))
    secrets = {sid: str(box.open(sub.client_state)["client_state"]) for sid, sub in stored.items()}
    batch = read_notifications(body, secrets.get)
    renew = batch.subscriptions_to_renew
    removed = frozenset(
        n.subscription_id for n in batch.lifecycle if n.event == "subscriptionRemoved"
    )
    if renew or removed:
        await db.write(lambda s: graph_push.lifecycle(s, renew=renew - removed, removed=removed))
    woken = batch.needs_delta | renew
    if batch.rejected:
        log.warning(
            "Graph push: %d notification(s) ignored (unknown or wrong clientState)", batch.rejected
        )
    return Received(sorted({stored[sid].account_id for sid in woken}), batch.rejected)
