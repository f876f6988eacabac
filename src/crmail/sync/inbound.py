"""Inbound sync of one IMAP folder: a round brings the CRM up to date with the server.

A round is cheap when nothing changed: a QRESYNC SELECT answers with what changed since
our HIGHESTMODSEQ (nothing), and UIDNEXT tells whether anything arrived. Its work grows
with the number of changes, not with the size of the folder.

Each round, in order:
1. SELECT; a new UIDVALIDITY (or a first visit) restarts the folder's import.
2. Flag changes and expunges since the last round (QRESYNC, or CONDSTORE + a UID search,
   or, on servers with neither, a full FLAGS fetch).
3. New mail: UIDs at or above our UIDNEXT, oldest first.
4. A bounded slice of the initial import, newest first, inside the history window.

Every batch is one :func:`crmail.storage.mail.apply_step` transaction that carries the
folder's cursor, so a crash at any point resumes exactly where the last commit stopped.
Messages are judged on their headers first; bodies are fetched (with BODY.PEEK) only for
messages that enter the CRM and are not stored yet. What enters follows the account's
scope (:mod:`crmail.domain.scope`); with auto-create on, contacts for new addresses are
created first (:mod:`crmail.domain.autocreate`), so their mail passes and links at arrival.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from crmail.domain import autocreate as auto_rule
from crmail.domain.attachments import AttachmentPolicy, account_policy, inbound_placeholder
from crmail.domain.batching import BatchSize
from crmail.domain.scope import AddressBook, Link, Scope, decide_in_scope
from crmail.errors import FolderMissing
from crmail.mime import ENVELOPE_FIELDS, Envelope, Head, ParsedMessage, parse_head, parse_message
from crmail.mime.keys import envelope_key, envelope_roles, needs_body
from crmail.providers.imap import HeaderFetch, ImapClient, SelectResult
from crmail.storage import autocreate, mail
from crmail.storage.db import Database
from crmail.sync import judging
from crmail.sync.folders import FolderGone, holds_its_mail

log = logging.getLogger(__name__)

#: a folder found unchanged records its check (``last_sync_at``) at most this often: a
#: commit per quiet round made a thousand idle accounts cost a core
HEARTBEAT_EVERY = 300.0

IMAP_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class SyncOptions:
    history_days: int = 365
    batch_size: int = 200
    #: at most this many bytes of mail per import slice (a slice is held in memory until
    #: written): 200 messages with 25 MB attachments must not take 5 GB
    slice_bytes: int = 64 * 1024 * 1024


def imap_date(d: datetime) -> str:
    return f"{d.day:02d}-{IMAP_MONTHS[d.month - 1]}-{d.year}"


class FolderSync:
    """Runs sync rounds for the folders of one account over one IMAP connection."""

    def __init__(
        self,
        db: Database,
        account: mail.AccountInfo,
        client: ImapClient,
        options: SyncOptions,
        *,
        status_probe: bool = True,
    ) -> None:
        self.db = db
        self.account = account
        self.client = client
        self.options = options
        #: import UIDs still to do, per folder id (newest first); rebuilt after a restart
        self._pending_import: dict[int, list[int]] = {}
        self._book: AddressBook | None = None
        self._blocklist: auto_rule.Blocklist | None = None
        #: probe with STATUS before a round; off for a connection that IDLEs in the folder
        #: (IDLE is the probe there, and the folder must stay selected for it)
        self.status_probe = status_probe
        self.scope = Scope.of(account.settings.get("scope"))
        #: messages per import slice: halved after a slice fails, grown back as slices commit
        self.batch = BatchSize(options.batch_size)
        self.auto = auto_rule.Options.of(account.settings)
        #: when each folder was last compared with the server (fresher than the
        #: database's ``last_sync_at``, which a quiet round no longer writes each time)
        self.checked_at: dict[int, datetime] = {}
        #: monotonic time of each folder's last commit
        self._committed: dict[int, float] = {}

    async def round(self, folder: mail.FolderInfo, *, import_batches: int = 1) -> mail.FolderInfo:
        """One sync round of ``folder``; returns its state after the round."""
        self._book = None
        self._blocklist = None
        c = self.client
        known = folder.uidvalidity is not None and folder.uidnext is not None
        if known and folder.import_complete and await self._unchanged(folder):
            await self._checked(folder.id)  # nothing changed
            return folder
        qresync = None
        if known and c.qresync_enabled and folder.highestmodseq:
            assert folder.uidvalidity is not None
            qresync = (folder.uidvalidity, folder.highestmodseq)
        try:
            sel = await c.select(folder.name, readonly=True, qresync=qresync)
        except FolderMissing as exc:
            raise FolderGone(f"folder {folder.name!r} is no longer on the server") from exc

        if not known or sel.uidvalidity != folder.uidvalidity:
            if known and not await holds_its_mail(self.db, c, folder):
                # Renamed or deleted, and another folder took the name (a server that
                # auto-creates its Archive): where the mail went is decided by discovery.
                raise FolderGone(f"folder {folder.name!r} was replaced on the server")
            if known:
                log.warning(
                    "UIDVALIDITY of %s changed (%s -> %s): re-mapping",
                    folder.name,
                    folder.uidvalidity,
                    sel.uidvalidity,
                )
            folder = await self._start(folder, sel.uidvalidity, sel.uidnext, sel.highestmodseq)
        else:
            folder = await self._apply_changes(folder, sel)
            folder = await self._new_mail(folder, sel.uidnext)

        return await self._import(folder, import_batches)

    async def _import(self, folder: mail.FolderInfo, batches: int) -> mail.FolderInfo:
        """Up to ``batches`` slices of the initial import, newest first.

        Slices overlap: while one waits on the server another is parsed, and the oldest
        finished slice is written while the next ones are fetched. Writes stay in order,
        so the committed cursor never runs ahead of committed data. A scope that depends
        on what earlier slices stored (CRM threads, auto-created contacts) fetches one
        slice at a time.
        """
        depth = 1 if self.scope is Scope.CRM_THREADS or self.auto.any else 2
        fetching: deque[asyncio.Task[mail.FolderStep]] = deque()
        writing: asyncio.Task[mail.StepResult] | None = None

        async def write_oldest() -> None:
            nonlocal writing
            step = await fetching.popleft()
            if writing is not None:
                await writing
                self.batch = self.batch.committed()
            writing = asyncio.ensure_future(self._apply(step))

        try:
            for _ in range(batches):
                if folder.import_complete:
                    break
                batch, folder = await self._next_slice(folder)
                fetching.append(asyncio.ensure_future(self._slice_step(folder, batch)))
                if len(fetching) >= depth:
                    await write_oldest()
            while fetching:
                await write_oldest()
            if writing is not None:
                await writing
                self.batch = self.batch.committed()
                writing = None
        except Exception:
            # The next slices are smaller, down to one message: a slice that cannot
            # arrive or commit whole (a connection dropping before a large slice is in,
            # a write refused) must not hold the import back for good. What is left is
            # looked up again below the committed floor: slices taken but not written
            # must not be skipped.
            self.batch = self.batch.failed()
            self._pending_import.pop(folder.id, None)
            raise
        finally:
            for task in fetching:
                task.cancel()
            if fetching:
                await asyncio.gather(*fetching, return_exceptions=True)
            if writing is not None and not writing.done():
                # Cancelled mid-import: let the write in flight finish (it is consistent),
                # but do not wait forever on it.
                await asyncio.wait({writing}, timeout=30.0)
        return folder

    async def _unchanged(self, folder: mail.FolderInfo) -> bool:
        """One STATUS says whether anything happened since the last round.

        UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ live in the server's index header: the
        answer costs the same for ten messages or a million, unlike a SELECT. Without
        CONDSTORE a flag change is invisible to STATUS, so such servers get a full round.
        """
        if not self.client.condstore or folder.highestmodseq is None:
            return False
        if not self.status_probe:
            return False
        if self.client.selected == folder.name:
            # STATUS on the selected mailbox reports this session's view, which lags
            # behind changes the session was not told about yet (RFC 3501 6.3.10).
            await self.client.unselect()
        try:
            st = await self.client.status(folder.name)
        except FolderMissing as exc:
            raise FolderGone(f"folder {folder.name!r} is no longer on the server") from exc
        return (st.uidvalidity, st.uidnext, st.highestmodseq) == (
            folder.uidvalidity,
            folder.uidnext,
            folder.highestmodseq,
        )

    # --- steps -------------------------------------------------------------------------

    async def _start(
        self, folder: mail.FolderInfo, uidvalidity: int, uidnext: int, modseq: int | None
    ) -> mail.FolderInfo:
        uids = [u for u in await self.client.uid_search(self._window_criteria()) if u < uidnext]
        self._pending_import[folder.id] = sorted(uids, reverse=True)
        return await self.db.write(
            lambda s: mail.start_folder(
                s,
                folder.id,
                uidvalidity=uidvalidity,
                uidnext=uidnext,
                highestmodseq=modseq,
                total=len(uids),
            )
        )

    def _window_criteria(self) -> str:
        since = datetime.now(UTC) - timedelta(days=self.options.history_days)
        return f"SINCE {imap_date(since)}"

    async def _apply_changes(self, folder: mail.FolderInfo, sel: SelectResult) -> mail.FolderInfo:
        assert folder.uidnext is not None
        c = self.client
        if sel.resynced:
            updates, vanished = list(sel.changed), set(sel.vanished)
        elif sel.exists == 0 and not await self._placed(folder):
            updates, vanished = [], set()
        elif c.condstore and folder.highestmodseq is not None:
            if sel.highestmodseq == folder.highestmodseq:
                updates, vanished = [], set()
            else:
                fetched = await c.fetch_flags("1:*", changed_since=folder.highestmodseq)
                updates = list(fetched.updates)
                vanished = await self._vanished_by_search(folder)
        else:
            # No CONDSTORE: the only way to see flag changes is to look at every flag.
            every = await c.fetch_flags("1:*") if sel.exists else None
            updates = list(every.updates) if every else []
            vanished = await self._vanished_by_search(folder)
        if not updates and not vanished and sel.highestmodseq == folder.highestmodseq:
            await self._checked(folder.id)  # nothing changed
            return folder
        # Not limited to UIDs below our UIDNEXT: a MOVE made by the CRM itself places a
        # message above it (COPYUID), and that copy's changes count too. Changes to UIDs
        # we never placed touch nothing.
        step = mail.FolderStep(
            folder_id=folder.id,
            flag_changes=[mail.FlagChange(u.uid, frozenset(u.flags), u.modseq) for u in updates],
            removed_uids=set(vanished),
            highestmodseq=sel.highestmodseq,
        )
        await self._apply(step)
        return replace(folder, highestmodseq=sel.highestmodseq or folder.highestmodseq)

    async def _placed(self, folder: mail.FolderInfo) -> set[int]:
        return await self.db.read(lambda s: mail.placed_uids(s, folder.id))

    async def _vanished_by_search(self, folder: mail.FolderInfo) -> set[int]:
        placed = await self._placed(folder)
        if not placed:
            return set()
        return placed - set(await self.client.uid_search("ALL"))

    async def _new_mail(self, folder: mail.FolderInfo, server_uidnext: int) -> mail.FolderInfo:
        assert folder.uidnext is not None
        if server_uidnext <= folder.uidnext:
            return folder
        # "n:*" always matches the highest UID, even below n: filter.
        uids = sorted(
            u
            for u in await self.client.uid_search(f"UID {folder.uidnext}:*")
            if u >= folder.uidnext
        )
        size = self.options.batch_size
        for i in range(0, len(uids), size):
            batch = uids[i : i + size]
            last = i + size >= len(uids)
            nxt = max(batch[-1] + 1, server_uidnext) if last else batch[-1] + 1
            step = await self._ingest(folder, batch)
            step.uidnext = nxt
            await self._apply(step)
            folder = replace(folder, uidnext=nxt)
        if not uids:
            await self._apply(mail.FolderStep(folder.id, uidnext=server_uidnext))
            folder = replace(folder, uidnext=server_uidnext)
        return folder

    async def _next_slice(self, folder: mail.FolderInfo) -> tuple[list[int], mail.FolderInfo]:
        """The UIDs of the next import slice, and the folder as it will be once written."""
        assert folder.import_floor is not None
        pending = self._pending_import.get(folder.id)
        if pending is None:
            # After a restart: what is left is below the floor the last commit recorded.
            found = []
            if folder.import_floor > 1:
                found = await self.client.uid_search(
                    f"UID 1:{folder.import_floor - 1} {self._window_criteria()}"
                )
            pending = sorted((u for u in found if u < folder.import_floor), reverse=True)
        pending = [u for u in pending if u < folder.import_floor]
        batch = pending[: self.batch.current]
        if len(batch) > 1:
            batch = _within(batch, await self.client.fetch_sizes(batch), self.options.slice_bytes)
        rest = pending[len(batch) :]
        self._pending_import[folder.id] = rest
        floor = batch[-1] if batch else folder.import_floor
        return batch, replace(folder, import_floor=floor, import_complete=not rest)

    async def _slice_step(self, after: mail.FolderInfo, batch: list[int]) -> mail.FolderStep:
        """The write for an import slice: its messages and the folder's new cursor."""
        step = await self._ingest(after, batch) if batch else mail.FolderStep(after.id)
        step.import_floor = after.import_floor
        step.import_complete = after.import_complete
        return step

    async def _apply(self, step: mail.FolderStep) -> mail.StepResult:
        account_id = self.account.id
        result = await self.db.write(lambda s: mail.apply_step(s, account_id, step))
        self._committed[step.folder_id] = time.monotonic()
        self.checked_at[step.folder_id] = datetime.now(UTC)
        return result

    async def _checked(self, folder_id: int) -> None:
        """A round that found nothing new: no commit, unless the folder's last one is
        older than :data:`HEARTBEAT_EVERY` (the status shows when it was last checked)."""
        self.checked_at[folder_id] = datetime.now(UTC)
        now = time.monotonic()
        if folder_id not in self._committed:
            # First check of this session: recorded at a random point of the first
            # period, so a thousand accounts started together do not all write at once.
            self._committed[folder_id] = now - random.random() * HEARTBEAT_EVERY
        if now - self._committed[folder_id] >= HEARTBEAT_EVERY:
            await self._apply(mail.FolderStep(folder_id))

    # --- one batch of UIDs -------------------------------------------------------------

    async def _address_book(self) -> AddressBook:
        if self._book is None:
            ws = self.account.workspace_id
            self._book = await self.db.read(lambda s: mail.address_book(s, ws))
        return self._book

    async def _ingest(self, folder: mail.FolderInfo, uids: list[int]) -> mail.FolderStep:
        step = mail.FolderStep(folder_id=folder.id)
        heads = await self.client.fetch_headers(uids, ENVELOPE_FIELDS)
        if not heads:
            return step
        book = await self._address_book()
        parsed_heads = await asyncio.to_thread(lambda: [parse_head(h.header) for h in heads])
        envelopes = [p.envelope for p in parsed_heads]
        # The key of a message without Message-ID needs its body: until the body is
        # fetched (only if the message enters), it stands in under a key of its UID.
        keys = [
            _pending_key(h.uid) if needs_body(e) else envelope_key(e)
            for h, e in zip(heads, envelopes, strict=True)
        ]
        ws = self.account.workspace_id
        known = await self.db.read(lambda s: mail.known_keys(s, ws, keys))

        fresh = {k: e for e, k in zip(envelopes, keys, strict=True) if k not in known}
        in_crm = await self._in_crm_threads(fresh) if self.scope is Scope.CRM_THREADS else set()

        def passes_gate(key: str) -> bool:
            return self.scope is not Scope.CRM_THREADS or key in in_crm

        if self.auto.any:
            book = await self._auto_create([e for k, e in fresh.items() if passes_gate(k)], book)

        early = await self._keyed_by_body(heads, envelopes, keys, book, in_crm)
        if early:
            real = {_pending_key(uid): key for uid, (key, _) in early.items()}
            in_crm |= {real[k] for k in in_crm & real.keys()}
            keys = [real.get(k, k) for k in keys]
            more = await self.db.read(lambda s: mail.known_keys(s, ws, list(real.values())))
            known = known | more

        wanted: dict[str, tuple[HeaderFetch, tuple[Link, ...]]] = {}
        placed: list[tuple[HeaderFetch, str]] = []
        skipped: Counter[str] = Counter()
        head_of: dict[int, Head] = {}
        for head, parsed_head, key in zip(heads, parsed_heads, keys, strict=True):
            if key in known or key in wanted:
                placed.append((head, key))
                continue
            decision = decide_in_scope(
                self.scope, envelope_roles(parsed_head.envelope), book, in_crm_thread=key in in_crm
            )
            if decision.store:
                wanted[key] = (head, decision.links)
                head_of[head.uid] = parsed_head
                placed.append((head, key))
            else:
                assert decision.skip_reason is not None
                skipped[decision.skip_reason.value] += 1

        bodies = {uid: raw for uid, (_, raw) in early.items() if uid in head_of}
        bodies.update(await self._bodies([u for u in head_of if u not in early]))
        policy = account_policy(self.account.settings)
        parsed = await asyncio.to_thread(
            lambda: {
                uid: limit_attachments(parse_message(raw, head=head_of.get(uid)), policy)
                for uid, raw in bodies.items()
            }
        )
        for head, key in placed:
            new = None
            if key in wanted and wanted[key][0].uid == head.uid:
                if head.uid not in parsed:  # expunged between the two fetches
                    continue
                new = mail.NewMessage(key, parsed[head.uid], bodies[head.uid], wanted[key][1])
            elif key in wanted and wanted[key][0].uid not in parsed:
                continue
            step.copies.append(
                mail.Copy(
                    uid=head.uid,
                    flags=frozenset(head.flags),
                    modseq=head.modseq,
                    dedup_key=key,
                    internaldate=head.internaldate,
                    new=new,
                )
            )
        step.skipped = skipped
        return step

    async def _keyed_by_body(
        self,
        heads: list[HeaderFetch],
        envelopes: list[Envelope],
        keys: list[str],
        book: AddressBook,
        in_crm: set[str],
    ) -> dict[int, tuple[str, bytes]]:
        """Keys and bytes, by UID, of the messages without Message-ID that enter the
        CRM: their key needs the body, fetched now. Other mail's body is never fetched,
        so such a message is not recognised as a copy of a stored one either."""
        entering = {
            h.uid: e
            for h, e, k in zip(heads, envelopes, keys, strict=True)
            if k == _pending_key(h.uid)
            and decide_in_scope(
                self.scope, envelope_roles(e), book, in_crm_thread=k in in_crm
            ).store
        }
        bodies = await self._bodies(list(entering))
        return {uid: (envelope_key(entering[uid], raw), raw) for uid, raw in bodies.items()}

    async def _bodies(self, uids: list[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        return {m.uid: m.raw for m in await self.client.fetch_messages(uids)}

    async def _in_crm_threads(self, fresh: dict[str, Envelope]) -> set[str]:
        return await judging.in_crm_threads(self.db, self.account, fresh)

    async def _auto_create(self, fresh: list[Envelope], book: AddressBook) -> AddressBook:
        """Create the contacts these messages call for, in one write; the book with them."""
        if self._blocklist is None:
            ws = self.account.workspace_id
            self._blocklist = await self.db.read(lambda s: autocreate.blocklist(s, ws))
        self._book = await judging.auto_create(
            self.db, self.account, self.auto, fresh, book, self._blocklist
        )
        return self._book


def _pending_key(uid: int) -> str:
    """Stands in for the key of a message without Message-ID until its body is read."""
    return f"uid:{uid}"


def _within(batch: list[int], sizes: dict[int, int], budget: int) -> list[int]:
    """The longest head of ``batch`` whose messages fit in ``budget`` bytes (at least one).
    A UID without a size was expunged: it costs nothing."""
    total = 0
    for i, uid in enumerate(batch):
        total += sizes.get(uid, 0)
        if total > budget and i > 0:
            return batch[:i]
    return batch


def limit_attachments(parsed: ParsedMessage, policy: AttachmentPolicy) -> ParsedMessage:
    """Attachments over the account's limit stay listed, as placeholders with the reason:
    the message is kept whole, nothing disappears silently."""
    if not any(a.size > policy.max_total_bytes for a in parsed.attachments):
        return parsed
    attachments = tuple(
        replace(
            a,
            placeholder_reason=a.placeholder_reason
            or inbound_placeholder(policy, a.filename or "attachment", a.size),
        )
        for a in parsed.attachments
    )
    return replace(parsed, attachments=attachments)
