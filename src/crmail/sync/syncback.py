"""Syncback: carry the CRM's queued changes to the IMAP server, in order, idempotently.

Each action is safe to run twice: flags are set, not toggled; a copy already gone from
its folder is simply not there to move; a crash between the server change and the
commit re-runs an action whose effect is already in place. The new UIDs a MOVE gives
(UIDPLUS COPYUID) are recorded so later actions on the message still find it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from crmail.domain.folders import Role, role_of
from crmail.errors import FolderMissing, InvalidInput, MessageNotInMailbox, ProviderError
from crmail.providers.imap import ImapClient, uid_set
from crmail.storage import mail, outbox
from crmail.storage.db import Database
from crmail.sync.folders import message_id_search

log = logging.getLogger(__name__)

#: names used when the server has no folder with the role (Onpipeline's seed: a
#: top-level "Sent", which users should not delete)
DEFAULT_NAMES = {Role.ARCHIVE: "Archive", Role.TRASH: "Trash", Role.SENT: "Sent", Role.JUNK: "Junk"}


@dataclass(frozen=True, slots=True)
class Located:
    """A copy of the message found on the server (placement_id None: not synced yet)."""

    uid: int
    placement_id: int | None
    flags: frozenset[str]


@dataclass(slots=True)
class Done:
    """What happened to each copy, for the commit that completes the action."""

    flags: dict[int, frozenset[str]] = field(default_factory=dict)  # placement id -> new flags
    moved: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # -> (folder, new uid)
    expunged: set[int] = field(default_factory=set)


class SyncBack:
    def __init__(self, db: Database, account: mail.AccountInfo, client: ImapClient) -> None:
        self.db = db
        self.account = account
        self.client = client
        self._roles: dict[Role, str] | None = None

    async def _load_roles(self) -> dict[Role, str]:
        if self._roles is None:
            self._roles = {}
            for f in await self.client.list_folders():
                r = role_of(f.name, f.special_use)
                if r is not Role.CUSTOM:
                    self._roles.setdefault(r, f.name)
        return self._roles

    async def folder_for(self, role: Role) -> str:
        """The account's folder with this role; created (with SPECIAL-USE where the
        server allows) when the server has none."""
        roles = await self._load_roles()
        if role not in roles:
            name = DEFAULT_NAMES.get(role, role.value.capitalize())
            special = "\\" + role.value.capitalize() if role in DEFAULT_NAMES else None
            await self.client.create_folder(name, special_use=special)
            log.info("account %s: created folder %s for %s", self.account.id, name, role)
            roles[role] = name
        return roles[role]

    async def run(self, action: outbox.Action) -> None:
        assert action.message_id is not None
        message_id = action.message_id
        change = outbox.SyncChange.from_payload(action.payload)
        dest: str | None = None
        if change.move_to_role:
            dest = await self.folder_for(Role(change.move_to_role))
        elif change.move_to:
            dest = await self._existing_folder(change.move_to)
        roles = await self._folder_roles()

        done = Done()
        located = await self._locate(message_id)
        if not located:
            if change.expunge or change.move_to_role == Role.TRASH.value:
                log.info("account %s: message %s already gone", self.account.id, message_id)
            else:
                raise MessageNotInMailbox(
                    f"the message is no longer in the mailbox {self.account.email}: "
                    "it was deleted or moved away in another mail client",
                    hint="nothing was changed on the server; the CRM shows what it holds",
                )
        for folder, group in located.items():
            await self.client.select(folder, readonly=False)
            uids = [c.uid for c in group]
            if change.add:
                await self.client.store_flags(uids, add=change.add)
            if change.remove:
                await self.client.store_flags(uids, remove=change.remove)
            for c in group:
                if c.placement_id is not None:
                    done.flags[c.placement_id] = (c.flags | change.add) - change.remove
            # Read state applies to every copy; a move only to copies where the user saw
            # the message (Done archives what is in INBOX, not the Sent copy).
            if change.from_role and roles.get(folder, Role.CUSTOM).value != change.from_role:
                continue
            known = [c.placement_id for c in group if c.placement_id is not None]
            if change.expunge:
                await self.client.expunge(uids)
                done.expunged.update(known)
            elif dest is not None and dest != folder:
                mapping, dest = await self._move(uids, dest, change)
                for c in group:
                    if c.placement_id is not None:
                        done.moved[c.placement_id] = (dest, mapping.get(c.uid))
        user_id = self.account.user_id
        await self.db.write(
            lambda s: mail.apply_syncback(
                s,
                self.account.id,
                user_id,
                action.id,
                message_id,
                done.flags,
                done.moved,
                done.expunged,
            )
        )

    async def _move(
        self, uids: list[int], dest: str, change: outbox.SyncChange
    ) -> tuple[dict[int, int], str]:
        """MOVE to ``dest``; a role's folder renamed or deleted meanwhile is found (or
        created) again, once."""
        try:
            return await self.client.move(uids, dest), dest
        except FolderMissing:
            if not change.move_to_role:
                raise
            self._roles = None
            dest = await self.folder_for(Role(change.move_to_role))
            return await self.client.move(uids, dest), dest

    async def _locate(self, message_id: int) -> dict[str, list[Located]]:
        """Where the message really is now, by folder.

        The stored placements are checked first (one search per folder). When another
        client moved the message, or renamed or deleted the folder it was in, they are
        stale: the message is then looked up by Message-ID, first in INBOX, the archive,
        All Mail and the synced folders, then in every other folder, so the user's action
        still reaches it (Done still marks it read after it was archived elsewhere).
        """
        copies = await self.db.read(lambda s: outbox.copies(s, self.account.id, message_id))
        found: dict[str, list[Located]] = defaultdict(list)
        stale = False
        by_folder: dict[str, list[outbox.Copy]] = defaultdict(list)
        for c in copies:
            by_folder[c.folder].append(c)
        for folder, group in by_folder.items():
            try:
                await self.client.select(folder, readonly=True)
            except FolderMissing:
                stale = True
                self._roles = None  # the folders changed: list them again
                continue
            present = set(await self.client.uid_search(f"UID {uid_set([c.uid for c in group])}"))
            for c in group:
                if c.uid in present:
                    found[folder].append(Located(c.uid, c.placement_id, c.flags))
                else:
                    stale = True
        if found and not stale:
            return found
        header = await self.db.read(lambda s: outbox.message_id_header(s, message_id))
        criteria = message_id_search([header]) if header else None
        if criteria is None:
            return found
        known = {(c.folder, c.uid): c for c in copies}
        usual, rest = await self._search_order()
        for names in (usual, rest):
            for name in names:
                if name in found:
                    continue
                try:
                    await self.client.select(name, readonly=True)
                except FolderMissing:
                    continue
                for uid in await self.client.uid_search(criteria):
                    placed = known.get((name, uid))
                    found[name].append(
                        Located(
                            uid,
                            placed.placement_id if placed else None,
                            placed.flags if placed else frozenset(),
                        )
                    )
                if found and names is rest:
                    break  # found outside the usual places: no need to open every folder
            if found:
                break
        return found

    async def _search_order(self) -> tuple[list[str], list[str]]:
        """Where to look for a message: the usual places (INBOX, the archive, All Mail,
        the synced folders), then every other folder, Trash last."""
        listed = [f for f in await self.client.list_folders() if f.selectable]
        roles = {f.name: role_of(f.name, f.special_use) for f in listed}
        synced = {f.name for f in await self.db.read(lambda s: mail.folders(s, self.account.id))}
        usual = [
            n for n, r in roles.items() if r in (Role.INBOX, Role.ARCHIVE, Role.ALL) or n in synced
        ]
        rest = sorted(
            (n for n in roles if n not in usual), key=lambda n: (roles[n] is Role.TRASH, n)
        )
        return usual, rest

    async def _folder_roles(self) -> dict[str, Role]:
        return {name: role for role, name in (await self._load_roles()).items()}

    async def _existing_folder(self, name: str) -> str:
        names = {f.name for f in await self.client.list_folders()}
        if name not in names:
            raise InvalidInput(f"there is no folder {name!r} in {self.account.email}")
        return name


def is_retryable(exc: Exception) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable
