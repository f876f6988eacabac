"""Which folders an account syncs, and what became of synced folders another client
renamed or deleted.

The server's folders are the truth. At the start of every session, and whenever a round
finds a synced folder missing (STATUS or SELECT answering NO [NONEXISTENT]) or replaced
(a new UIDVALIDITY while its mail is no longer there), each vanished folder is looked
for:

- by its mail: the Message-IDs of its newest messages are searched for in the folders
  the CRM does not sync yet; the one holding at least half of them is the folder under
  its new name (a rename keeps the messages, and on most servers the UIDs too);
- by its special use, for a folder that held no mail.

A folder found again is *followed*: its record, placements and the user's selection take
the new name, and no message is stored twice. A folder found nowhere is *retired*: its
placements go, its messages stay on their timelines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from crmail.domain.folders import Role, folders_to_sync, may_be_renamed_to, new_home, role_of
from crmail.errors import FolderMissing, ProviderError
from crmail.providers.imap import ImapClient
from crmail.storage import folders as stored_folders
from crmail.storage import mail
from crmail.storage.db import Database

log = logging.getLogger(__name__)

# Message-IDs that can go in a quoted IMAP string as they are (no CHARSET needed).
_SEARCHABLE = re.compile(r"[\x21-\x7e]{1,900}\Z")


class FolderGone(ProviderError):
    """A synced folder is missing from the server, or is no longer the same folder."""

    code = "folder_gone"


def message_id_search(ids: Sequence[str]) -> str | None:
    """UID SEARCH criteria matching any of these Message-IDs (None: nothing to look for)."""
    terms = [
        'HEADER Message-ID "<' + i.replace("\\", "\\\\").replace('"', '\\"') + '>"'
        for i in ids
        if _SEARCHABLE.match(i)
    ]
    if not terms:
        return None
    criteria = terms[-1]
    for term in reversed(terms[:-1]):
        criteria = f"OR {term} {criteria}"
    return criteria


async def count_found(client: ImapClient, folder: str, ids: Sequence[str]) -> int:
    """How many messages with these Message-IDs ``folder`` holds (0 if it does not exist)."""
    criteria = message_id_search(ids)
    if criteria is None:
        return 0
    try:
        await client.select(folder, readonly=True)
    except FolderMissing:
        return 0
    return len(await client.uid_search(criteria))


async def holds_its_mail(db: Database, client: ImapClient, folder: mail.FolderInfo) -> bool:
    """Whether the server folder of this name still holds the mail the CRM placed in it.

    A new UIDVALIDITY alone is a renumbering (the round re-maps it); with the mail gone
    too, the folder was renamed or deleted and another one took its name.
    """
    ids = await db.read(lambda s: stored_folders.sample_message_ids(s, folder.id))
    if not ids:
        return True
    return await count_found(client, folder.name, ids) >= (len(ids) + 1) // 2


async def discover(
    db: Database,
    account_id: int,
    client: ImapClient,
    *,
    account: mail.AccountInfo | None = None,
) -> list[mail.FolderInfo]:
    """The account's folders to sync, after following or retiring vanished ones.

    ``account``: the account as just read (its folder selection), saving a read.
    """
    listed = [f for f in await client.list_folders() if f.selectable]
    roles = {f.name: role_of(f.name, f.special_use) for f in listed}
    stored = await db.read(lambda s: mail.folders(s, account_id))
    tracked = {f.name for f in stored}
    resolved = False
    for f in stored:
        if f.role is Role.INBOX:
            continue  # INBOX can be neither renamed away nor deleted
        if f.name in roles:
            if f.uidvalidity is None:
                continue
            try:
                status = await client.status(f.name)
            except FolderMissing:
                status = None
            if status is not None and (
                status.uidvalidity == f.uidvalidity or await holds_its_mail(db, client, f)
            ):
                continue
        await _resolve(db, client, f, roles, tracked)
        resolved = True
    if account is None:
        account = await db.read(lambda s: mail.account_info(s, account_id))
    raw = account.settings.get("folders")
    selected = [str(x) for x in raw] if isinstance(raw, list) else []
    wanted = folders_to_sync([(f.name, f.special_use) for f in listed], selected)
    if not resolved:
        # The usual start: every folder known as it is. No write (a thousand accounts
        # starting would make a thousand of them to change nothing).
        have = {f.name: f for f in stored}
        if all(name in have and have[name].role is role for name, role in wanted):
            names = {name for name, _ in wanted}
            return [f for f in stored if f.name in names]
    return await db.write(lambda s: mail.ensure_folders(s, account_id, wanted))


async def _resolve(
    db: Database,
    client: ImapClient,
    folder: mail.FolderInfo,
    roles: dict[str, Role],
    tracked: set[str],
) -> None:
    """Follow ``folder`` to its new name, or retire it."""
    ids = await db.read(lambda s: stored_folders.sample_message_ids(s, folder.id))
    candidates = [
        name
        for name, role in roles.items()
        if name not in tracked and may_be_renamed_to(folder.role, role)
    ]
    same_use = [n for n in candidates if roles[n] is folder.role and folder.role is not Role.CUSTOM]
    found: dict[str, int] = {}
    if ids:
        for name in candidates:
            n = await count_found(client, name, ids)
            if n:
                found[name] = n
    home = new_home(folder.role, len(ids), found, same_use)
    tracked.discard(folder.name)
    if home is None:
        held = await db.write(lambda s: stored_folders.retire(s, folder.id))
        log.warning(
            "folder %r is gone from the server and its mail was found nowhere: "
            "%d placements retired, the messages stay in the CRM",
            folder.name,
            len(held),
        )
        return
    # A folder synced for its role that lost its special use in the rename (an Archive
    # renamed "Done") keeps syncing as a chosen folder.
    keep = folder.role is not Role.CUSTOM and roles[home] is Role.CUSTOM
    await db.write(lambda s: stored_folders.follow_rename(s, folder.id, home, keep_synced=keep))
    tracked.add(home)
    log.warning("folder %r was renamed %r on the server: followed", folder.name, home)
