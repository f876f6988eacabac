"""One batch of Gmail messages, seen through their metadata, made true in the CRM.

The same batch shape serves the import (a page of ``messages.list``) and incremental
sync (the messages ``history.list`` named): for each message, its labels say which
folders hold it (:mod:`.labels`).

- A message stored already (found by its Gmail id) gets its placements and flags set
  to what its labels say: archive elsewhere removes the INBOX copy, read elsewhere sets
  ``\\Seen``; the Inbox items follow exactly as for an IMAP flag change or move.
- A message not stored is judged on its envelope headers (the metadata) with the IMAP
  path's rules (:mod:`crmail.domain.scope`, :mod:`crmail.sync.judging`); only mail that
  enters the CRM has its raw bytes fetched, so private mail's bodies never leave Google.
  A message whose dedup key is stored already (the Sent copy of a CRM send, a copy in
  a teammate's account) is placed without fetching it.
- A message deleted for good loses its placements; the stored message and its
  timeline stay.

Everything, with the sync cursor, is written in one transaction
(:func:`crmail.storage.mail.apply_step` per folder), so a crash redoes the batch and
the unique keys (folder + uid, workspace + dedup key) keep the redo from adding twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crmail.domain import autocreate as auto_rule
from crmail.domain.attachments import AttachmentPolicy, account_policy
from crmail.domain.scope import Link, Scope, decide_in_scope
from crmail.errors import MessageNotInMailbox, ProviderError
from crmail.mime import ENVELOPE_FIELDS, Head, ParsedMessage, parse_head, parse_message
from crmail.mime.keys import envelope_key, envelope_roles, needs_body
from crmail.providers.gmail import GmailClient, Message
from crmail.storage import autocreate, mail, remote
from crmail.storage.db import Database
from crmail.sync import judging
from crmail.sync.gmail.labels import Layout, flags_of, uid_of
from crmail.sync.inbound import limit_attachments

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


def header_block(message: Message) -> bytes:
    """The metadata headers as a header block, for the MIME layer's envelope parser."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in message.headers)
    return (lines + "\r\n").encode("utf-8", "surrogateescape")


class GmailIngest:
    def __init__(
        self, db: Database, account: mail.AccountInfo, client: GmailClient, layout: Layout
    ) -> None:
        self.db = db
        self.account = account
        self.client = client
        self.layout = layout
        self.scope = Scope.of(account.settings.get("scope"))
        self.auto = auto_rule.Options.of(account.settings)
        self._blocklist: auto_rule.Blocklist | None = None
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
        ordered = [steps[f.id] for f in all_folders if _worth(steps[f.id])]
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
        heads = await asyncio.to_thread(lambda: [parse_head(header_block(m)) for m in candidates])
        keys = [
            _pending_key(m.id) if needs_body(h.envelope) else envelope_key(h.envelope)
            for m, h in zip(candidates, heads, strict=True)
        ]
        ws = self.account.workspace_id
        known = await self.db.read(lambda s: mail.known_keys(s, ws, keys))
        fresh = {k: h.envelope for h, k in zip(heads, keys, strict=True) if k not in known}
        in_crm: set[str] = set()
        if self.scope is Scope.CRM_THREADS:
            in_crm = await judging.in_crm_threads(self.db, self.account, fresh)
        book = await self.db.read(lambda s: mail.address_book(s, ws))
        if self.auto.any:
            if self._blocklist is None:
                self._blocklist = await self.db.read(lambda s: autocreate.blocklist(s, ws))
            gated = [
                e for k, e in fresh.items() if self.scope is not Scope.CRM_THREADS or k in in_crm
            ]
            book = await judging.auto_create(
                self.db, self.account, self.auto, gated, book, self._blocklist
            )

        entering: dict[str, tuple[Message, Head, str, tuple[Link, ...]]] = {}
        placing: list[tuple[Message, str]] = []
        for m, head, key in zip(candidates, heads, keys, strict=True):
            if key in known:
                placing.append((m, key))
                continue
            decision = decide_in_scope(
                self.scope, envelope_roles(head.envelope), book, in_crm_thread=key in in_crm
            )
            if decision.store:
                entering[m.id] = (m, head, key, decision.links)
            else:
                assert decision.skip_reason is not None
                outcome.skipped[decision.skip_reason.value] += 1

        raws = await self._raw(list(entering), outcome)
        policy = account_policy(self.account.settings)
        news: list[tuple[Message, mail.NewMessage]] = []
        for gid, raw in raws.items():
            m, head, key, links = entering[gid]
            if key == _pending_key(gid):
                key = envelope_key(head.envelope, raw)
            parsed = await asyncio.to_thread(_parse, raw, head, policy)
            news.append((m, mail.NewMessage(key, parsed, raw, links)))
        late = {n.dedup_key for _, n in news if n.dedup_key not in known}
        known |= await self.db.read(lambda s: mail.known_keys(s, ws, late))

        for m, key in placing:
            self._place(m, key, None, steps)
        for m, new in news:
            # Stored meanwhile (a copy of the same mail earlier in this batch): placed only.
            self._place(m, new.dedup_key, None if new.dedup_key in known else new, steps)

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

    async def _raw(self, ids: list[str], outcome: Outcome) -> dict[str, bytes]:
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
                    outcome.skipped[UNREADABLE] += 1
            self.raw_fetched += len(chunk)
        return raws


def _parse(raw: bytes, head: Head, policy: AttachmentPolicy) -> ParsedMessage:
    return limit_attachments(parse_message(raw, head=head), policy)


def _pending_key(gmail_id: str) -> str:
    """Stands in for the key of a message without Message-ID until its body is read."""
    return f"gmail:{gmail_id}"


def _worth(step: mail.FolderStep) -> bool:
    return bool(
        step.copies
        or step.flag_changes
        or step.removed_uids
        or step.skipped
        or step.highestmodseq is not None
        or step.import_floor is not None
        or step.import_complete is not None
    )
