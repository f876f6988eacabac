"""IMAP provider: an asyncio client (our wire layer + imapclient's response parser)."""

from crmail.providers.imap.client import ImapClient
from crmail.providers.imap.connection import ImapConnection, ResponseFramer, TaggedResult
from crmail.providers.imap.results import (
    FlagFetch,
    FlagUpdate,
    FolderInfo,
    FolderStatus,
    HeaderFetch,
    MessageFetch,
    SelectResult,
    ServerEvent,
)
from crmail.providers.imap.settings import ImapSettings
from crmail.providers.imap.uidsets import parse_uid_set, uid_set, uid_set_chunks

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
