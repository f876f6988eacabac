"""One page of a folder's delta, seen through the messages' metadata, made true in the CRM.

- A message stored already (found by its immutable id) gets its placement in the
  folder Graph says it is in, and its ``\\Seen`` from ``isRead``; its placements in
  other folders go (an Outlook message is in one folder). The Inbox items follow as
  for an IMAP move or flag change: archived in Outlook, out of the CRM Inbox.
- A message not stored is judged on its envelope (``internetMessageHeaders`` when the
  page has them, else the from/to/cc/subject/internetMessageId properties) by the
  shared rules (:class:`crmail.sync.api_mailbox.Judge`); only mail that enters the CRM
  has its MIME (``$value``) fetched. A change reported with only the changed
  properties is read first (``get_message``), still without its body.
- An ``@removed`` entry is checked with ``get_message`` before it counts: Graph
  reports a message moved out and back (A→B→A) as removed from A and never re-adds
  it, so a message still in the folder keeps its placement; one now in another synced
  folder is placed there; one gone (or in a folder crmail does not sync) loses the
  placement, and the stored message and its timeline stay.

Everything, with the folder's new sync link, is written in one transaction, so a
crash redoes the page and the unique keys (folder + uid, workspace + dedup key) keep
the redo from adding twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crmail.domain.folders import Role
from crmail.errors import MessageNotInMailbox, ProviderError
from crmail.mime import ENVELOPE_FIELDS
from crmail.providers.graph import GraphClient, Message, Removal
from crmail.storage import mail, remote, sync_links
from crmail.storage.db import Database
from crmail.sync.api_mailbox import Candidate, Judge, OnMailbox, header_block, uid_of_remote, worth
from crmail.sync.graph.folders import Layout, flags_of

log = logging.getLogger(__name__)

#: skip reason of a message Graph would not give (refused on that message alone)
UNREADABLE = "unreadable_message"
_ENVELOPE = {name.lower() for name in ENVELOPE_FIELDS}


@dataclass(slots=True)
class Outcome:
    stored: int = 0
    placed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def envelope_of(m: Message) -> bytes:
    """The message's envelope headers as a header block."""
    if m.headers:
        return header_block((k, v) for k, v in m.headers if k.lower() in _ENVELOPE)
    lines: list[tuple[str, str]] = []
    if m.sender and m.sender.address:
        lines.append(("From", _fmt((m.sender,))))
    if m.to:
        lines.append(("To", _fmt(m.to)))
    if m.cc:
        lines.append(("Cc", _fmt(m.cc)))
    if m.subject is not None:
        lines.append(("Subject", m.subject))
    if m.internet_message_id:
        lines.append(("Message-ID", m.internet_message_id))
    when = m.sent or m.received
    if when is not None:
        lines.append(("Date", when.strftime("%a, %d %b %Y %H:%M:%S +0000")))
    return header_block(lines)


def _fmt(addresses: Sequence[object]) -> str:
    from email.utils import formataddr

    return ", ".join(
        formataddr((getattr(a, "name", ""), getattr(a, "address", ""))) for a in addresses
    )


def _partial(m: Message) -> bool:
    """A delta change that reported only what changed (not enough to judge on)."""
    return m.sender is None and m.subject is None and m.internet_message_id is None


class GraphIngest(OnMailbox[GraphClient, Layout]):
    def __init__(
        self, db: Database, account: mail.AccountInfo, client: GraphClient, layout: Layout
    ) -> None:
        super().__init__(db, account, client, layout)
        self.judge = Judge(db, account, "graph")
        #: messages whose MIME was fetched (a figure for tests and the bench)
        self.raw_fetched = 0

    async def apply(
        self,
        folder: mail.FolderInfo,
        messages: Sequence[Message],
        removed: Sequence[Removal] = (),
        *,
        link: str | None = None,
        import_complete: bool | None = None,
        not_before: datetime | None = None,
    ) -> Outcome:
        """Make one delta page of ``folder`` true in the CRM, with its new ``link``."""
        account_id = self.account.id
        here = self.layout.graph_id(folder.id)
        uids = {uid_of_remote(m.id) for m in messages} | {uid_of_remote(r.id) for r in removed}
        placed = await self.db.read(lambda s: remote.placed_by_uid(s, account_id, uids))
        steps = {f.id: mail.FolderStep(f.id) for f in self.layout.folders}
        candidates: list[tuple[Message, mail.FolderInfo]] = []

        def place_known(m: Message, where: mail.FolderInfo, known: remote.Placed) -> None:
            before = next(iter(known.folders.values()), ())
            flags = flags_of(m.is_read, before)
            uid = uid_of_remote(m.id)
            if where.id not in known.folders:
                steps[where.id].copies.append(self._copy(m, known.dedup_key, flags))
            elif tuple(sorted(flags)) != known.folders[where.id]:
                steps[where.id].flag_changes.append(mail.FlagChange(uid, flags, None))
            for other in known.folders.keys() - {where.id}:
                if other in steps:
                    steps[other].removed_uids.add(uid)

        for m in messages:
            known = placed.get(uid_of_remote(m.id))
            where = self.layout.folder(m.parent_folder_id or here)
            if known is not None:
                if where is None:  # now in a folder crmail does not sync
                    for other in known.folders:
                        if other in steps:
                            steps[other].removed_uids.add(uid_of_remote(m.id))
                else:
                    place_known(m, where, known)
                continue
            if _partial(m):
                try:
                    m = await self.client.get_message(m.id)
                except MessageNotInMailbox:
                    continue
                where = self.layout.folder(m.parent_folder_id or here)
            if where is None or m.is_draft or where.role is Role.TRASH:
                continue  # Deleted Items holds CRM mail deleted in Outlook, nothing new
            if not_before is not None and m.received is not None and m.received < not_before:
                continue
            candidates.append((m, where))

        for r in removed:
            uid = uid_of_remote(r.id)
            known = placed.get(uid)
            if known is None or folder.id not in known.folders:
                continue
            try:
                now = await self.client.get_message(r.id, headers=False)
            except MessageNotInMailbox:
                steps[folder.id].removed_uids.add(uid)
                continue
            where = self.layout.folder(now.parent_folder_id)
            if where is not None and where.id == folder.id:
                continue  # moved out and back (A→B→A): still here
            steps[folder.id].removed_uids.add(uid)
            if where is not None:
                place_known(now, where, known)

        outcome = Outcome()
        if candidates:
            await self._judge(candidates, steps, outcome)
        home = steps[folder.id]
        home.skipped = outcome.skipped
        home.import_complete = import_complete
        ordered = [steps[f.id] for f in self.layout.folders if worth(steps[f.id])]
        links = {folder.id: link} if link is not None else {}
        results = await self.db.write(
            lambda s: sync_links.apply_linked_steps(s, account_id, ordered, links)
        )
        outcome.stored = sum(r.stored for r in results)
        outcome.placed = sum(r.placed for r in results)
        return outcome

    def _copy(
        self, m: Message, key: str, flags: frozenset[str], new: mail.NewMessage | None = None
    ) -> mail.Copy:
        return mail.Copy(
            uid=uid_of_remote(m.id),
            flags=flags,
            modseq=None,
            dedup_key=key,
            internaldate=m.received,
            new=new,
            remote_id=m.id,
            remote_thread=m.conversation_id,
        )

    async def _judge(
        self,
        candidates: list[tuple[Message, mail.FolderInfo]],
        steps: dict[int, mail.FolderStep],
        outcome: Outcome,
    ) -> None:
        by_id = {m.id: (m, where) for m, where in candidates}
        judged = await self.judge.judge(
            [Candidate(m.id, envelope_of(m)) for m, _ in candidates], self._mime
        )
        outcome.skipped.update(judged.skipped)
        for rid, key in judged.placing:
            m, where = by_id[rid]
            steps[where.id].copies.append(self._copy(m, key, flags_of(m.is_read)))
        for rid, new in judged.news:
            m, where = by_id[rid]
            # Stored meanwhile (a copy of the same mail earlier in this page): placed only.
            fresh = None if new.dedup_key in judged.known else new
            steps[where.id].copies.append(self._copy(m, new.dedup_key, flags_of(m.is_read), fresh))

    async def _mime(self, ids: list[str], skipped: Counter[str]) -> dict[str, bytes]:
        async def one(rid: str) -> tuple[str, bytes | None]:
            try:
                return rid, await self.client.get_mime(rid)
            except MessageNotInMailbox:
                return rid, None  # deleted between the two requests: its removal follows
            except ProviderError as exc:
                if exc.retryable:
                    raise
                # One message Graph refuses must not hold the account back.
                log.warning(
                    "account %s: Graph message %s could not be read: %s",
                    self.account.id,
                    rid,
                    exc.message,
                )
                skipped[UNREADABLE] += 1
                return rid, None

        got = await asyncio.gather(*(one(rid) for rid in ids))
        self.raw_fetched += len(ids)
        return {rid: raw for rid, raw in got if raw is not None}
