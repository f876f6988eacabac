"""The per-user CRM Inbox, as a state table.

An item is "open" (in the CRM Inbox) while its message sits in the owner's mailbox
INBOX and has not been handled; leaving INBOX on the server archives it (it stays on
the timeline); coming back reopens it. Done and Snooze are the user's own decisions:
the server copy staying in INBOX does not undo them.
"""

from __future__ import annotations

from enum import StrEnum


class ItemState(StrEnum):
    OPEN = "open"
    ARCHIVED = "archived"
    DONE = "done"
    SNOOZED = "snoozed"


S = ItemState

# (current state or None, message in the owner's INBOX, Done archives on the server)
#   -> next state, or None for "no item"
_TRANSITIONS: dict[tuple[ItemState | None, bool, bool], ItemState | None] = {}
for _archives in (True, False):
    _TRANSITIONS.update(
        {
            (None, True, _archives): S.OPEN,
            (None, False, _archives): None,
            (S.OPEN, True, _archives): S.OPEN,
            (S.OPEN, False, _archives): S.ARCHIVED,
            (S.ARCHIVED, True, _archives): S.OPEN,
            (S.ARCHIVED, False, _archives): S.ARCHIVED,
            (S.SNOOZED, True, _archives): S.SNOOZED,
            (S.SNOOZED, False, _archives): S.ARCHIVED,
            (S.DONE, False, _archives): S.DONE,
        }
    )
# Done archived the copy; seeing it in INBOX again means someone moved it back: reopen.
_TRANSITIONS[(S.DONE, True, True)] = S.OPEN
# Done only marks read on this account: the copy stays in INBOX and the item stays done.
_TRANSITIONS[(S.DONE, True, False)] = S.DONE


def next_state(
    current: ItemState | None, in_inbox: bool, *, done_archives: bool = True
) -> ItemState | None:
    """Where an item goes when the server shows its message in INBOX (or not).

    Only called when no CRM action on the message is still on its way to the server:
    while one is, the CRM state the user chose stands (no flip-flop).
    """
    return _TRANSITIONS[(current, in_inbox, done_archives)]


def is_read(flags: list[str] | frozenset[str] | set[str]) -> bool:
    return "\\Seen" in flags
