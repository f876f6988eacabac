"""The typed results of IMAP commands: frozen dataclasses, no IMAP grammar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal as TypingLiteral


@dataclass(frozen=True)
class FolderInfo:
    name: str  # decoded (mUTF-7 -> str)
    raw_name: bytes  # exactly as on the wire; pass back to select() etc. to avoid re-encoding
    delimiter: str | None
    flags: frozenset[str]
    special_use: str | None  # "\\Inbox", "\\Sent", "\\Archive", "\\All", "\\Trash", ...

    @property
    def selectable(self) -> bool:
        low = {f.lower() for f in self.flags}
        return "\\noselect" not in low and "\\nonexistent" not in low


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    highestmodseq: int | None


@dataclass(frozen=True)
class FlagUpdate:
    uid: int
    flags: frozenset[str]
    modseq: int | None


@dataclass(frozen=True)
class SelectResult:
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None
    vanished: frozenset[int] = frozenset()
    changed: tuple[FlagUpdate, ...] = ()
    readonly: bool = True
    #: True when QRESYNC data (vanished/changed) is complete for the known state.
    #: False when QRESYNC was not asked for, not available, or UIDVALIDITY changed:
    #: then ``vanished`` is unknown and the caller must do a full resync.
    resynced: bool = False


@dataclass(frozen=True)
class FlagFetch:
    updates: tuple[FlagUpdate, ...]
    vanished: frozenset[int]


@dataclass(frozen=True)
class HeaderFetch:
    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime
    size: int
    modseq: int | None
    header: bytes


@dataclass(frozen=True)
class MessageFetch:
    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime
    size: int
    modseq: int | None
    raw: bytes


EventKind = TypingLiteral["exists", "expunge", "fetch", "vanished"]


@dataclass(frozen=True)
class ServerEvent:
    """A change in the selected mailbox reported by the server.

    ``number`` is the message count for ``exists`` and the sequence number for
    ``expunge``/``fetch``; ``uids`` is set for ``vanished``. Treat events as hints
    to resync (CHANGEDSINCE / VANISHED), not as the full truth.
    """

    kind: EventKind
    number: int | None = None
    uid: int | None = None
    flags: frozenset[str] | None = None
    modseq: int | None = None
    uids: frozenset[int] = frozenset()
