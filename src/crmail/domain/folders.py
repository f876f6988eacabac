"""Folder roles and which folders a sync covers."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    INBOX = "inbox"
    SENT = "sent"
    ARCHIVE = "archive"
    ALL = "all"  # Gmail's All Mail: an archive that also holds the Inbox
    TRASH = "trash"
    JUNK = "junk"
    DRAFTS = "drafts"
    CUSTOM = "custom"  # a folder the user chose


SPECIAL_USE_ROLES = {
    "\\Inbox": Role.INBOX,
    "\\Sent": Role.SENT,
    "\\Archive": Role.ARCHIVE,
    "\\All": Role.ALL,
    "\\Trash": Role.TRASH,
    "\\Junk": Role.JUNK,
    "\\Drafts": Role.DRAFTS,
}

#: Roles synced by default: what the user received, sent and archived.
SYNCED_ROLES = (Role.INBOX, Role.SENT, Role.ARCHIVE, Role.ALL)


def role_of(name: str, special_use: str | None) -> Role:
    if name.upper() == "INBOX":
        return Role.INBOX
    if special_use:
        return SPECIAL_USE_ROLES.get(special_use, Role.CUSTOM)
    return Role.CUSTOM


def folders_to_sync(
    folders: list[tuple[str, str | None]], selected: list[str] | None = None
) -> list[tuple[str, Role]]:
    """INBOX, Sent and Archive/All Mail by SPECIAL-USE, plus folders the user selected.

    When both \\Archive and \\All exist (Gmail-like), All Mail duplicates the Inbox; the
    archive role is enough, so \\All is synced only when there is no \\Archive.
    """
    chosen: dict[str, Role] = {}
    roles = {name: role_of(name, su) for name, su in folders}
    has_archive = Role.ARCHIVE in roles.values()
    for name, role in roles.items():
        if role in SYNCED_ROLES and not (role is Role.ALL and has_archive):
            chosen.setdefault(name, role)
    for name in selected or []:
        if name in roles:
            chosen.setdefault(name, roles[name])
    order = {r: i for i, r in enumerate(Role)}
    return sorted(chosen.items(), key=lambda kv: (order[kv[1]], kv[0]))


#: roles a vanished synced folder is never taken to have become: mail moved there was
#: thrown away or is a draft, not the same folder under a new name
_NOT_A_NEW_HOME = frozenset({Role.INBOX, Role.TRASH, Role.JUNK, Role.DRAFTS})


def may_be_renamed_to(old: Role, candidate: Role) -> bool:
    """Whether a folder of role ``candidate`` may be ``old`` under a new name: a plain
    folder, or one announcing the same special use."""
    if candidate in _NOT_A_NEW_HOME:
        return False
    return candidate is Role.CUSTOM or candidate is old


def new_home(old: Role, looked_for: int, found: dict[str, int], same_use: list[str]) -> str | None:
    """Where a synced folder that vanished from the server went, or None if nowhere.

    ``looked_for`` Message-IDs of its messages were searched for; ``found`` says how many
    each candidate folder holds; ``same_use`` are candidates announcing the folder's
    special use. The folder holding at least half of them is the folder renamed (a
    special-use match wins a tie). A folder that held no mail can only be recognised by
    its special use.
    """
    if looked_for == 0:
        return same_use[0] if old is not Role.CUSTOM and len(same_use) == 1 else None
    need = (looked_for + 1) // 2
    best = sorted(
        (name for name, n in found.items() if n >= need),
        key=lambda name: (-found[name], name not in same_use, name),
    )
    return best[0] if best else None
