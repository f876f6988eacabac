"""How Gmail API accounts sync: set by the operator (crmail.config), read by the worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from crmail.providers.gmail import DEFAULT_BASE_URL, RetryPolicy

#: Google recommends calling users.watch again once a day (a watch lasts 7 days)
WATCH_RENEWAL = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class GmailOptions:
    base_url: str = DEFAULT_BASE_URL
    #: the Pub/Sub topic Gmail publishes changes to (projects/<p>/topics/<t>); None: no
    #: push, the safety poll alone (WorkerOptions.poll_interval) follows the mailbox
    push_topic: str | None = None
    watch_renewal: float = WATCH_RENEWAL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
