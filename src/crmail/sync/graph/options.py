"""How Microsoft Graph accounts sync: set by the operator (crmail.config), read by the worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from crmail.providers.graph import DEFAULT_BASE_URL
from crmail.providers.http import RetryPolicy


@dataclass(frozen=True, slots=True)
class GraphOptions:
    base_url: str = DEFAULT_BASE_URL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: messages per delta page asked of Graph (Prefer: odata.maxpagesize); None: Graph's
    page_size: int | None = None
