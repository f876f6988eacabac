"""The per-user CRM Inbox, as a state table.

An item is "open" (in the CRM Inbox) while its message sits in the owner's mailbox
INBOX and has not been handled; leaving INBOX on the server archives it (it stays on
the timeline); coming back reopens it.
"""

from __future__ import annotations

from enum import StrEnum


class ItemState(StrEnum):
    OPEN = "open"
    ARCHIVED = "archived"
    DONE = "done"


# (current state or None, message still in the owner's INBOX) -> next state or None
_TRANSITIONS: dict[tuple[ItemState | None, bool], ItemState | None] = {
    (None, True): ItemState.OPEN,
    (None, False): None,
    (ItemState.OPEN, True): ItemState.OPEN,
    (ItemState.OPEN, False): ItemState.ARCHIVED,
    (ItemState.ARCHIVED, True): ItemState.OPEN,
    (ItemState.ARCHIVED, False): ItemState.ARCHIVED,
    # Handled in the CRM: the server copy leaving INBOX confirms it; staying does not reopen it.
    (ItemState.DONE, True): ItemState.DONE,
    (ItemState.DONE, False): ItemState.DONE,
}


def next_state(current: ItemState | None, in_inbox: bool) -> ItemState | None:
    return _TRANSITIONS[(current, in_inbox)]


def is_read(flags: list[str] | frozenset[str] | set[str]) -> bool:
    return "\\Seen" in flags
