"""IMAP provider: an asyncio client (our wire layer + imapclient's response parser)."""

from crmail.providers.imap.client import (
    FlagFetch,
    FlagUpdate,
    FolderInfo,
    FolderStatus,
    HeaderFetch,
    ImapClient,
    ImapSettings,
    MessageFetch,
    SelectResult,
    ServerEvent,
    parse_uid_set,
    uid_set,
    uid_set_chunks,
)
from crmail.providers.imap.connection import ImapConnection, ResponseFramer, TaggedResult

__all__ = [
    "FlagFetch",
    "FlagUpdate",
    "FolderInfo",
    "FolderStatus",
    "HeaderFetch",
    "ImapClient",
    "ImapConnection",
    "ImapSettings",
    "MessageFetch",
    "ResponseFramer",
    "SelectResult",
    "ServerEvent",
    "TaggedResult",
    "parse_uid_set",
    "uid_set",
    "uid_set_chunks",
]
