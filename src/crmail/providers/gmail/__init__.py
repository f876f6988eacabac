"""The Gmail API adapter: an httpx client (:mod:`.client`), its answers as dataclasses
(:mod:`.resources`), Gmail's errors in crmail's words (:mod:`.errors`) and the batch
wire format (:mod:`.batch`). See docs/providers/gmail.md for how Gmail maps onto crmail."""

from crmail.providers.gmail.client import (
    DEFAULT_BASE_URL,
    AccessTokenSource,
    GmailClient,
    RetryPolicy,
)
from crmail.providers.gmail.resources import (
    SYSTEM_LABELS,
    History,
    HistoryRecord,
    Label,
    LabelChange,
    Message,
    MessagePage,
    MessageRef,
    Profile,
    Watch,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "SYSTEM_LABELS",
    "AccessTokenSource",
    "GmailClient",
    "History",
    "HistoryRecord",
    "Label",
    "LabelChange",
    "Message",
    "MessagePage",
    "MessageRef",
    "Profile",
    "RetryPolicy",
    "Watch",
]
