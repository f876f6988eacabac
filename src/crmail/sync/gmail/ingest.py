"""One batch of Gmail messages, seen through their metadata, made true in the CRM.

The same batch shape serves the import (a page of ``messages.list``) and incremental
sync (the messages ``history.list`` named): for each message, its labels say which
folders hold it (:mod:`.labels`).

- A message stored already (found by its Gmail id) gets its placements and flags set
  to what its labels say: archive elsewhere removes the INBOX copy, read elsewhere sets
  ``\\Seen``; the Inbox items follow exactly as for an IMAP flag change or move.
- A message not stored is judged on its envelope headers (the metadata) with the IMAP
  path's rules (:class:`crmail.sync.api_mailbox.Judge`); only mail that enters the CRM
  has its raw bytes fetched, so private mail's bodies never leave Google.
  A message whose dedup key is stored already (the Sent copy of a CRM send, a copy in
  a teammate's account) is placed without fetching it.
- A message deleted for good loses its placements; the stored message and its
  timeline stay.

Everything, with the sync cursor, is written in one transaction
(:func:`crmail.storage.mail.apply_step` per folder), so a crash redoes the batch and
the unique keys (folder + uid, workspace + dedup key) keep the redo from adding twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crmail.errors import MessageNotInMailbox, ProviderError
from crmail.mime import ENVELOPE_FIELDS
from crmail.providers.gmail import GmailClient, Message
from crmail.storage import mail, remote
from crmail.storage.db import Database
from crmail.sync.api_mailbox import Candidate, Judge, OnMailbox, header_block, worth
from crmail.sync.gmail.labels import Layout, flags_of, uid_of

log = logging.getLogger(__name__)

#: raw messages fetched per batch request: bodies are held in memory until written
RAW_PER_REQUEST = 25
#: skip reason of a message Gmail would not give (400/404 on that message alone)
UNREADABLE = "unreadable_message"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Cursor values written with the batch (None: unchanged)."""

    history_id: int | None = None
    import_floor: int | None = None
    import_complete: bool | None = None


@dataclass(slots=True)
class Outcome:
    stored: int = 0
    placed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    message_ids: tuple[int, ...] = ()


class GmailIngest(OnMailbox[GmailClient, Layout]):
    def __init__(
        self, db: Database, account: mail.AccountInfo, client: GmailClient, layout: Layout
    ) -> None:
        super().__init__(db, account, client, layout)
        self.judge = Judge(db, account, "gmail")
        #: messages whose raw bytes were fetched (a figure for tests and the bench)
        self.raw_fetched = 0

    async def metadata(self, ids: Sequence[str]) -> tuple[list[Message], set[str]]:
        """Labels and envelope headers of ``ids``; the ids Gmail no longer has apart."""
        got = await self.client.batch_get_metadata(list(ids), ENVELOPE_FIELDS)
        metas: list[Message] = []
        gone: set[str] = set()
        for gid, answer in got.items():
            if isinstance(answer, Message):
                metas.append(answer)
            elif isinstance(answer, MessageNotInMailbox):
                gone.add(gid)
            else:
                raise answer
        return metas, gone

    async def apply(
        self,
        metas: Sequence[Message],
        gone: Iterable[str] = (),
        *,
        cursor: Cursor = Cursor(),
        not_before: datetime | None = None,
    ) -> Outcome:
        """Make ``metas`` (with labels and envelope headers) and ``gone`` true in the CRM.

        ``not_before``: a message not stored yet and older than this (the history
        window) is left out, as the import would have left it.
        """
        gone = set(gone)
        account_id = self.account.id
        uids = {uid_of(m.id) for m in metas} | {uid_of(g) for g in gone}
        placed = await self.db.read(lambda s: remote.placed_by_uid(s, account_id, uids))
        all_folders = [*self.layout.by_label.values(), self.layout.all_mail]
        steps = {f.id: mail.FolderStep(f.id) for f in all_folders}
        candidates: list[Message] = []
        for m in metas:
            wanted = self.layout.folders_for(m.label_ids)
            flags = flags_of(m.label_ids)
            uid = uid_of(m.id)
            known = placed.get(uid)
            if known is None:
                if wanted and (
                    not_before is None or m.internal_date is None or m.internal_date >= not_before
                ):
                    candidates.append(m)
                continue
            wanted_ids = {f.id for f in wanted}
            for f in wanted:
                if f.id not in known.folders:
                    steps[f.id].copies.append(self._copy(m, known.dedup_key, flags))
                elif tuple(sorted(flags)) != known.folders[f.id]:
                    steps[f.id].flag_changes.append(mail.FlagChange(uid, flags, None))
            for folder_id in known.folders.keys() - wanted_ids:
                if folder_id in steps:
                    steps[folder_id].removed_uids.add(uid)
        for g in gone:
            known = placed.get(uid_of(g))
            for folder_id in known.folders if known else ():
                if folder_id in steps:
                    steps[folder_id].removed_uids.add(uid_of(g))

        outcome = Outcome()
        if candidates:
            await self._judge(candidates, steps, outcome)
        home = steps[self.layout.all_mail.id]
        home.skipped = outcome.skipped
        home.highestmodseq = cursor.history_id
        home.import_floor = cursor.import_floor
        home.import_complete = cursor.import_complete
        ordered = [steps[f.id] for f in all_folders if worth(steps[f.id])]
        results = await self.db.write(lambda s: remote.apply_steps(s, account_id, ordered))
        outcome.stored = sum(r.stored for r in results)
        outcome.placed = sum(r.placed for r in results)
        outcome.message_ids = tuple(sorted({i for r in results for i in r.message_ids}))
        return outcome

    def _copy(
        self, m: Message, key: str, flags: frozenset[str], new: mail.NewMessage | None = None
    ) -> mail.Copy:
        return mail.Copy(
            uid=uid_of(m.id),
            flags=flags,
            modseq=None,
            dedup_key=key,
            internaldate=m.internal_date,
            new=new,
            remote_id=m.id,
            remote_thread=m.thread_id or None,
        )

    # --- judging messages not stored yet ------------------------------------------------

    async def _judge(
        self, candidates: list[Message], steps: dict[int, mail.FolderStep], outcome: Outcome
    ) -> None:
        by_id = {m.id: m for m in candidates}
        judged = await self.judge.judge(
            [Candidate(m.id, header_block(m.headers)) for m in candidates], self._raw
        )
        outcome.skipped.update(judged.skipped)
        for gid, key in judged.placing:
            self._place(by_id[gid], key, None, steps)
        for gid, new in judged.news:
            # Stored meanwhile (a copy of the same mail earlier in this batch): placed only.
            fresh = None if new.dedup_key in judged.known else new
            self._place(by_id[gid], new.dedup_key, fresh, steps)

    def _place(
        self,
        m: Message,
        key: str,
        new: mail.NewMessage | None,
        steps: dict[int, mail.FolderStep],
    ) -> None:
        flags = flags_of(m.label_ids)
        for n, folder in enumerate(self.layout.folders_for(m.label_ids)):
            steps[folder.id].copies.append(self._copy(m, key, flags, new if n == 0 else None))

    async def _raw(self, ids: list[str], skipped: Counter[str]) -> dict[str, bytes]:
        raws: dict[str, bytes] = {}
        for start in range(0, len(ids), RAW_PER_REQUEST):
            chunk = ids[start : start + RAW_PER_REQUEST]
            got = await self.client.batch_get_messages(chunk, format="raw")
            for gid, answer in got.items():
                if isinstance(answer, Message) and answer.raw is not None:
                    raws[gid] = answer.raw
                elif isinstance(answer, MessageNotInMailbox):
                    continue  # deleted between the two requests: its deletion follows
                elif isinstance(answer, ProviderError) and answer.retryable:
                    raise answer
                else:
                    # One message Gmail refuses must not hold the account back.
                    log.warning(
                        "account %s: Gmail message %s could not be read: %s",
                        self.account.id,
                        gid,
                        getattr(answer, "message", "no content"),
                    )
                    skipped[UNREADABLE] += 1
            self.raw_fetched += len(chunk)
        return raws
