"""The Microsoft Graph mail adapter: an httpx client (:mod:`.client`), its answers as
dataclasses (:mod:`.resources`), Graph's errors in crmail's words (:mod:`.errors`) and
the reading of change notifications (:mod:`.notifications`). See
docs/providers/microsoft-graph.md for how Graph maps onto crmail."""

from crmail.providers.graph.client import (
    DEFAULT_BASE_URL,
    DEFAULT_SELECT,
    MAILBOX_CONCURRENCY,
    Attachment,
    GraphClient,
    OutgoingMail,
    check_outlook_attachments,
)
from crmail.providers.graph.resources import (
    WELL_KNOWN_FOLDERS,
    Address,
    DeltaPage,
    FolderDelta,
    MailFolder,
    Message,
    MessageDelta,
    Removal,
    Subscription,
    User,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_SELECT",
    "MAILBOX_CONCURRENCY",
    "WELL_KNOWN_FOLDERS",
    "Address",
    "Attachment",
    "DeltaPage",
    "FolderDelta",
    "GraphClient",
    "MailFolder",
    "Message",
    "MessageDelta",
    "OutgoingMail",
    "Removal",
    "Subscription",
    "User",
    "check_outlook_attachments",
]
