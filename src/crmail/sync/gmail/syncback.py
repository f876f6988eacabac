"""The outbox's sync actions on a Gmail account: label changes on the message's ids.

The CRM's actions are queued in IMAP words (:class:`crmail.storage.outbox.SyncChange`:
flags to add or remove, a folder role or name to move to); here they become Gmail's:

- ``\\Seen`` added / removed: UNREAD removed / added; ``\\Flagged``: STARRED;
- Done (move to the archive, from INBOX): INBOX removed (with UNREAD, in one call);
- move to a folder: its label added, INBOX removed (to INBOX: INBOX added; to All
  Mail, or an "Archive" that is no label: INBOX removed, as Done);
- delete (move to Trash, or delete for good from Trash): ``messages.trash`` — crmail's
  ``gmail.modify`` scope cannot delete for good, and Trash empties itself;
- snooze stays in the CRM (nothing to send).

Each action is safe to run twice: labels are added and removed, not toggled. A message
Gmail no longer has (404) or a label it refuses (400) fails that action alone, in words
on the message (the drain records it); the account goes on.
"""

from __future__ import annotations

import logging

from crmail.domain.folders import Role
from crmail.errors import InvalidInput, MessageNotInMailbox
from crmail.providers.gmail import GmailClient
from crmail.storage import mail, outbox
from crmail.storage.db import Database
from crmail.sync.api_mailbox import OnMailbox
from crmail.sync.gmail.labels import ALL_MAIL, INBOX, SPAM, Layout, label_changes

log = logging.getLogger(__name__)


class GmailSyncBack(OnMailbox[GmailClient, Layout]):
    def __init__(
        self, db: Database, account: mail.AccountInfo, client: GmailClient, layout: Layout
    ) -> None:
        super().__init__(db, account, client, layout)
        self._user_labels: dict[str, str] | None = None

    async def _label_named(self, name: str) -> str | None:
        """The label a move to folder ``name`` adds; None: the move archives (All Mail,
        or "Archive" where no label has that name: Gmail has no archive label)."""
        if name.upper() == INBOX:
            return INBOX
        if self._user_labels is None:
            self._user_labels = {label.name: label.id for label in await self.client.list_labels()}
        label = self._user_labels.get(name)
        if label is None and name.casefold() in (ALL_MAIL.casefold(), "archive"):
            return None
        if label is None:
            raise InvalidInput(f"there is no label {name!r} in {self.account.email}")
        return label

    async def run(self, action: outbox.Action) -> None:
        change, ids, copies = await self._action_target(action)
        trash = change.expunge or change.move_to_role == Role.TRASH.value
        if not ids and not trash:
            raise MessageNotInMailbox(
                f"the message is no longer in the mailbox {self.account.email}: "
                "it was deleted in Gmail",
                hint="nothing was changed in Gmail; the CRM shows what it holds",
            )
        add, remove = label_changes(change.add, change.remove)
        leaves: set[str] = set()  # roles of the copies this action takes away
        if change.move_to_role in (Role.ARCHIVE.value, Role.ALL.value):
            remove.add(INBOX)
            leaves.add(Role.INBOX.value)
        elif change.move_to_role == Role.INBOX.value:
            add.add(INBOX)
        elif change.move_to_role == Role.JUNK.value:
            add.add(SPAM)
            remove.add(INBOX)
            leaves |= {r.value for r in Role}
        elif change.move_to:
            label = await self._label_named(change.move_to)
            if label is not None:
                add.add(label)
            if label != INBOX:
                remove.add(INBOX)
                leaves.add(Role.INBOX.value)
        if trash:
            leaves |= {r.value for r in Role}
        remove -= add
        for gid in ids:
            try:
                if add or remove:
                    await self.client.modify_message(gid, add=sorted(add), remove=sorted(remove))
                if trash:
                    await self.client.trash(gid)
            except MessageNotInMailbox:
                if not trash:
                    raise
                log.info("account %s: Gmail message %s already gone", self.account.id, gid)
        expunged = {c.placement_id for c in copies if c.role in leaves}
        await self._record_syncback(action, change, copies, {}, expunged)
