"""The outbox's sync actions on a Microsoft Graph account: Graph calls on the message.

The CRM's actions are queued in IMAP words (:class:`crmail.storage.outbox.SyncChange`);
here they become Graph's:

- ``\\Seen`` added / removed: ``isRead`` true / false (PATCH);
- Done (move to the archive): read, then moved to Archive (created when the mailbox
  has none); move to Inbox, to Junk, to a folder by name: ``move``;
- delete: moved to Deleted Items, where the Outlook user can still find it;
- snooze stays in the CRM (nothing to send).

With immutable ids the message keeps its id when it moves, so the placement moves with
it at once (same uid, in the destination's crmail folder) and the next delta round
finds it already there. Each action is safe to run twice (isRead is set, not toggled;
moving to where a message is changes nothing). A message Graph no longer has fails that
action alone, in words; the account goes on.
"""

from __future__ import annotations

from crmail.domain.folders import Role
from crmail.errors import InvalidInput, MessageNotInMailbox
from crmail.providers.graph import GraphClient
from crmail.storage import outbox
from crmail.sync.api_mailbox import OnMailbox
from crmail.sync.graph.folders import SEEN, Layout


class GraphSyncBack(OnMailbox[GraphClient, Layout]):
    async def _destination(self, change: outbox.SyncChange) -> str | None:
        """The Graph folder id the message goes to, or None (it stays)."""
        role = change.move_to_role
        if change.expunge or role == Role.TRASH.value:
            return (await self.client.folder("deleteditems")).id
        if role in (Role.ARCHIVE.value, Role.ALL.value):
            return (await self.client.archive_folder()).id
        if role == Role.INBOX.value:
            return (await self.client.folder("inbox")).id
        if role == Role.JUNK.value:
            return (await self.client.folder("junkemail")).id
        if change.move_to:
            if change.move_to.lower() == "inbox":
                return (await self.client.folder("inbox")).id
            found = await self.client.find_folder(change.move_to)
            if found is None:
                raise InvalidInput(f"there is no folder {change.move_to!r} in {self.account.email}")
            return found.id
        return None

    async def run(self, action: outbox.Action) -> None:
        change, ids, copies = await self._action_target(action)
        if change.from_role:
            copies = [c for c in copies if c.role == change.from_role]
        if not ids:
            raise MessageNotInMailbox(
                f"the message is no longer in the mailbox {self.account.email}: "
                "it was deleted in Outlook",
                hint="nothing was changed in Outlook; the CRM shows what it holds",
            )
        destination = await self._destination(change) if copies or not change.from_role else None
        read = True if SEEN in change.add else False if SEEN in change.remove else None
        for gid in ids:
            if read is not None:
                await self.client.update_message(gid, is_read=read)
            if destination is not None:
                await self.client.move_message(gid, destination)
        moved: dict[int, tuple[str, int | None]] = {}
        expunged: set[int] = set()
        target = self.layout.folder(destination)
        for c in copies if destination is not None else ():
            if target is not None and c.folder_id == target.id:
                continue
            if target is not None:
                moved[c.placement_id] = (target.name, c.uid)
            else:
                expunged.add(c.placement_id)
        await self._record_syncback(action, change, copies, moved, expunged)
