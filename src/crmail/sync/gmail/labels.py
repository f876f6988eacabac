"""Gmail labels as crmail folders.

A Gmail label is a folder: a message is in the folder of each label it carries, and
in the archive when it carries neither INBOX nor a user label. A Gmail message is ONE
stored message, with one placement per synced folder it is in (:func:`placed_under`):

- "INBOX" (role inbox) and "SENT" (role sent): the system labels;
- user labels the user chose (the account's ``folders`` option, by label name);
- "All Mail" (role all, "an archive that also holds the Inbox", as Gmail's IMAP All
  Mail): every message in one of the folders above, and every message archived without
  a user label; never one in Trash or Spam (nor a draft). Archiving (removing INBOX)
  leaves this copy, so an archived message keeps a placement and can still be acted on;
  trashing removes it. This folder also carries the account's sync cursor: its
  ``highestmodseq`` is the Gmail historyId, ``import_floor`` the internalDate (epoch ms)
  of the oldest message the import has handled.

A message filed only under labels the user did not choose (a filter that skips the
Inbox, or archived with such a label) is in no synced folder, as mail in an unsynced
IMAP folder: it does not enter the CRM, its body is never fetched, and a stored message
that goes there loses its placements (it leaves the CRM Inbox, stays on the timeline).

Placements keep ``uid`` (unique per folder, used by the shared storage code) as a
stable number made from the Gmail id (16 hex digits: its value, less the sign bit of a
64-bit column), and ``remote_id`` as the id itself. Flags: ``\\Seen`` unless the
message has UNREAD, ``\\Flagged`` with STARRED.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from crmail.domain.folders import Role
from crmail.storage.mail import FolderInfo

INBOX, SENT, UNREAD, STARRED, TRASH, SPAM, DRAFT = (
    "INBOX",
    "SENT",
    "UNREAD",
    "STARRED",
    "TRASH",
    "SPAM",
    "DRAFT",
)
ALL_MAIL = "All Mail"
#: labels whose messages leave every crmail folder
OUTSIDE = frozenset({TRASH, SPAM, DRAFT})
SEEN, FLAGGED = "\\Seen", "\\Flagged"

_UID_MASK = (1 << 63) - 1


def uid_of(gmail_id: str) -> int:
    """The placement uid of a Gmail id: stable, so a redo finds the same row."""
    return int(gmail_id, 16) & _UID_MASK


def flags_of(labels: Iterable[str]) -> frozenset[str]:
    present = set(labels)
    flags = set()
    if UNREAD not in present:
        flags.add(SEEN)
    if STARRED in present:
        flags.add(FLAGGED)
    return frozenset(flags)


def label_changes(add: Iterable[str], remove: Iterable[str]) -> tuple[set[str], set[str]]:
    """IMAP-style flag changes (the outbox speaks them) as labels to add and remove."""
    to_add: set[str] = set()
    to_remove: set[str] = set()
    for flag in add:
        if flag == SEEN:
            to_remove.add(UNREAD)
        elif flag == FLAGGED:
            to_add.add(STARRED)
    for flag in remove:
        if flag == SEEN:
            to_add.add(UNREAD)
        elif flag == FLAGGED:
            to_remove.add(STARRED)
    return to_add, to_remove


def is_user_label(label_id: str) -> bool:
    """Gmail names the labels a user makes ``Label_<n>``; its own are upper-case words
    (INBOX, IMPORTANT, CATEGORY_UPDATES, ...), none of them a folder of the user's."""
    return label_id.startswith("Label_")


def placed_under(labels: Iterable[str], chosen: Collection[str]) -> list[str]:
    """The synced folders a message with ``labels`` is in, by label (ALL_MAIL for All
    Mail), when the user chose the user labels ``chosen`` (ids).

    A label is a folder, so a message filed only under labels the user did not choose
    is in none, as it would be in an unsynced IMAP folder; a message without INBOX and
    without user labels is archived (All Mail).
    """
    present = set(labels)
    if present & OUTSIDE:
        return []
    synced = [label for label in (INBOX, SENT) if label in present]
    synced += sorted(label for label in present if label in chosen)
    filed_elsewhere = any(is_user_label(label) and label not in chosen for label in present)
    if synced or not filed_elsewhere:
        synced.append(ALL_MAIL)
    return synced


def wanted_folders(user_labels: Iterable[str]) -> list[tuple[str, Role]]:
    """The crmail folders of a Gmail account: INBOX, SENT, All Mail, chosen labels."""
    folders = [(INBOX, Role.INBOX), (SENT, Role.SENT), (ALL_MAIL, Role.ALL)]
    return folders + [(name, Role.CUSTOM) for name in user_labels]


@dataclass(frozen=True, slots=True)
class Layout:
    """The account's folders, and the Gmail label each stands for."""

    all_mail: FolderInfo
    by_label: dict[str, FolderInfo]  # label id -> folder (INBOX, SENT, user labels)

    @classmethod
    def of(cls, folders: Iterable[FolderInfo], label_ids: dict[str, str]) -> Layout:
        """``label_ids``: user label name -> Gmail label id."""
        by_name = {f.name: f for f in folders}
        by_label = {INBOX: by_name[INBOX], SENT: by_name[SENT]}
        for name, label_id in label_ids.items():
            if name in by_name:
                by_label[label_id] = by_name[name]
        return cls(by_name[ALL_MAIL], by_label)

    @property
    def inbox(self) -> FolderInfo:
        return self.by_label[INBOX]

    def folders_for(self, labels: Iterable[str]) -> list[FolderInfo]:
        """Where a message with these labels has its placements (INBOX first)."""
        chosen = self.by_label.keys() - {INBOX, SENT}
        return [
            self.all_mail if label == ALL_MAIL else self.by_label[label]
            for label in placed_under(labels, chosen)
        ]

    def label_of(self, folder_name: str) -> str | None:
        return next((lab for lab, f in self.by_label.items() if f.name == folder_name), None)
