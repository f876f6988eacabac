"""How Microsoft Graph accounts sync: set by the operator (crmail.config), read by the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from crmail.providers.graph import DEFAULT_BASE_URL
from crmail.providers.http import RetryPolicy

#: Graph keeps a mail subscription at most 10080 minutes (7 days); asked a little less
#: so a clock a few minutes ahead of Graph's is not refused
SUBSCRIPTION_LIFE = timedelta(minutes=10000)
#: renewed when this share of its life has gone by
RENEW_AT = 0.8


@dataclass(frozen=True, slots=True)
class GraphOptions:
    base_url: str = DEFAULT_BASE_URL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: messages per delta page asked of Graph (Prefer: odata.maxpagesize); None: Graph's
    page_size: int | None = None
    #: where Graph POSTs change notifications ({CRMAIL_PUBLIC_URL}/api/push/graph);
    #: None: no subscription, the safety poll alone (WorkerOptions.poll_interval)
    notification_url: str | None = None
    subscription_life: timedelta = SUBSCRIPTION_LIFE
    renew_at: float = RENEW_AT
