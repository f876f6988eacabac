"""Reading what Microsoft Graph POSTs to crmail's notification endpoint. Pure: no IO.

- Creating or renewing a subscription, Graph first POSTs ``?validationToken=…``; the
  endpoint must echo the token as text/plain with 200 within 10 seconds
  (:func:`validation_token`).
- Change notifications come in batches ``{"value": [...]}``; each carries the
  ``clientState`` crmail set on the subscription. One that does not match is not from
  Graph (or not for this subscription) and is dropped, never acted on.
- Lifecycle notifications (``lifecycleEvent``): ``reauthorizationRequired`` (renew the
  subscription), ``subscriptionRemoved`` (create it again and resync by delta),
  ``missed`` (notifications were dropped: run a delta round).

Notifications only say *that* something changed; the delta round is always the truth.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crmail.errors import InvalidInput

__all__ = [
    "LIFECYCLE_EVENTS",
    "ChangeNotification",
    "LifecycleNotification",
    "NotificationBatch",
    "read_notifications",
    "validation_token",
]

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

#: The clientState crmail set on a subscription, by subscription id (None: unknown).
ClientStateLookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class ChangeNotification:
    subscription_id: str
    change_type: str  # created | updated | deleted
    resource: str  # e.g. "Users/{id}/Messages/{message id}"
    resource_id: str | None  # the message's id (immutable when subscribed with it)


@dataclass(frozen=True, slots=True)
class LifecycleNotification:
    subscription_id: str
    event: str  # one of LIFECYCLE_EVENTS


@dataclass(frozen=True, slots=True)
class NotificationBatch:
    changes: tuple[ChangeNotification, ...]
    lifecycle: tuple[LifecycleNotification, ...]
    #: Entries dropped for a missing or wrong clientState, an unknown subscription or
    #: an unknown lifecycle event: counted for the logs, never acted on.
    rejected: int

    @property
    def subscriptions_to_renew(self) -> frozenset[str]:
        return frozenset(
            n.subscription_id for n in self.lifecycle if n.event == "reauthorizationRequired"
        )

    @property
    def needs_delta(self) -> frozenset[str]:
        """Subscriptions whose folders should run a delta round now."""
        return frozenset(n.subscription_id for n in self.changes) | frozenset(
            n.subscription_id
            for n in self.lifecycle
            if n.event in ("missed", "subscriptionRemoved")
        )


def validation_token(query: Mapping[str, str]) -> str | None:
    """The token to echo (as text/plain, status 200) when the request is Graph's
    validation handshake, else None."""
    token = query.get("validationToken")
    return token if token else None


def _client_state_ok(entry: Mapping[str, Any], expected: str | None) -> bool:
    given = entry.get("clientState")
    if expected is None or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def read_notifications(body: bytes, client_state_for: ClientStateLookup) -> NotificationBatch:
    """The changes and lifecycle events of one POST whose clientState matches.

    :raises InvalidInput: the body is not a Graph notification batch at all.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The notification is not JSON.") from exc
    entries = data.get("value") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput("The notification has no list of changes ('value').")
    changes: list[ChangeNotification] = []
    lifecycle: list[LifecycleNotification] = []
    rejected = 0
    for entry in entries:
        sub = entry.get("subscriptionId") if isinstance(entry, dict) else None
        if not isinstance(sub, str) or not _client_state_ok(entry, client_state_for(sub)):
            rejected += 1
            continue
        event = entry.get("lifecycleEvent")
        if event is not None:
            if event in LIFECYCLE_EVENTS:
                lifecycle.append(LifecycleNotification(sub, str(event)))
            else:
                rejected += 1
            continue
        resource_data = entry.get("resourceData")
        resource_id = resource_data.get("id") if isinstance(resource_data, dict) else None
        changes.append(
            ChangeNotification(
                sub,
                str(entry.get("changeType") or ""),
                str(entry.get("resource") or ""),
                resource_id if isinstance(resource_id, str) else None,
            )
        )
    return NotificationBatch(tuple(changes), tuple(lifecycle), rejected)
