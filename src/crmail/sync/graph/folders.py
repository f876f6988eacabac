"""Outlook folders as crmail folders.

An Outlook message lives in exactly one folder. crmail syncs the well-known Inbox,
Sent Items, Archive and Deleted Items, plus the folders the user chose (the account's
``folders`` option, by display name, found through the folder delta). A message is ONE
stored message with a placement in the synced folder it is in: moved to Archive in
Outlook, its Inbox placement becomes an Archive placement (it leaves the CRM Inbox and
stays on the timeline); moved to a folder crmail does not sync, it loses its placements
and the stored message stays.

Placements keep ``remote_id`` = Graph's immutable id (it survives moves) and ``uid`` a
stable number made from it; ``remote_thread`` = the conversationId. ``isRead`` is
``\\Seen``. Each folder's cursor is its ``sync_link`` (the delta link) and
``import_complete`` (its first round is over).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crmail.domain.folders import Role
from crmail.storage.mail import FolderInfo

SEEN = "\\Seen"
#: well-known name -> (crmail folder name, role)
WELL_KNOWN: dict[str, tuple[str, Role]] = {
    "inbox": ("Inbox", Role.INBOX),
    "sentitems": ("Sent Items", Role.SENT),
    "archive": ("Archive", Role.ARCHIVE),
    "deleteditems": ("Deleted Items", Role.TRASH),
}


def flags_of(is_read: bool | None, before: Iterable[str] = ()) -> frozenset[str]:
    """The flags after Graph said ``is_read`` (None: not reported, as before)."""
    flags = set(before)
    if is_read is True:
        flags.add(SEEN)
    elif is_read is False:
        flags.discard(SEEN)
    return frozenset(flags)


def wanted_folders(user_folders: Iterable[str]) -> list[tuple[str, Role]]:
    return [*WELL_KNOWN.values(), *((name, Role.CUSTOM) for name in user_folders)]


@dataclass(frozen=True, slots=True)
class Layout:
    """The account's synced folders and the Graph folder id of each."""

    by_graph_id: dict[str, FolderInfo]

    @classmethod
    def of(cls, folders: Iterable[FolderInfo], graph_ids: dict[str, str]) -> Layout:
        """``graph_ids``: crmail folder name -> Graph folder id."""
        by_name = {f.name: f for f in folders}
        return cls({gid: by_name[name] for name, gid in graph_ids.items() if name in by_name})

    def graph_id(self, folder_id: int) -> str:
        return next(g for g, f in self.by_graph_id.items() if f.id == folder_id)

    def folder(self, graph_id: str | None) -> FolderInfo | None:
        return self.by_graph_id.get(graph_id) if graph_id else None

    def with_role(self, role: Role) -> FolderInfo | None:
        return next((f for f in self.by_graph_id.values() if f.role is role), None)

    @property
    def folders(self) -> list[FolderInfo]:
        return list(self.by_graph_id.values())
