"""What every mailbox synced through a provider's API (not IMAP) shares.

The Gmail and Microsoft Graph engines differ in how they learn what changed; once they
hold a batch of messages seen through their metadata, the rest is the same:

- :class:`Judge`: messages not stored yet are judged on their envelope headers with the
  IMAP path's rules (:mod:`crmail.domain.scope`, :mod:`crmail.sync.judging`); only mail
  that enters the CRM has its raw bytes fetched (``fetch_raw``), so private mail's
  bodies never leave the provider. A message whose dedup key is stored already (the
  Sent copy of a CRM send, a teammate's copy) is placed without fetching it;
- :func:`worth`: whether a folder step changes anything;
- :class:`OnMailbox`: what a part of the session (ingest, sync-back) holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from crmail.domain import autocreate as auto_rule
from crmail.domain.attachments import AttachmentPolicy, account_policy
from crmail.domain.scope import Link, Scope, decide_in_scope
from crmail.mime import Head, ParsedMessage, parse_head, parse_message
from crmail.mime.keys import envelope_key, envelope_roles, needs_body
from crmail.storage import autocreate, mail, outbox, remote
from crmail.storage.db import Database
from crmail.sync import judging
from crmail.sync.inbound import limit_attachments

log = logging.getLogger(__name__)

_UID_MASK = (1 << 63) - 1


def uid_of_remote(remote_id: str) -> int:
    """A stable placement uid for a provider id that is not a number (Graph's ids): a
    redo finds the same row (``uid`` is unique per folder)."""
    digest = hashlib.blake2b(remote_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _UID_MASK


@dataclass(frozen=True, slots=True)
class Candidate:
    """A message not stored yet: its provider id and its envelope as a header block."""

    remote_id: str
    head: bytes


@dataclass(slots=True)
class Judged:
    #: (remote id, dedup key) of messages stored already: placed, not fetched
    placing: list[tuple[str, str]] = field(default_factory=list)
    #: (remote id, message to store) of messages entering the CRM
    news: list[tuple[str, mail.NewMessage]] = field(default_factory=list)
    #: news whose key turned out stored meanwhile (an earlier copy in the same batch)
    known: set[str] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)


RawFetcher = Callable[[list[str], Counter[str]], Awaitable[dict[str, bytes]]]


class Judge:
    def __init__(self, db: Database, account: mail.AccountInfo, provider: str) -> None:
        self.db = db
        self.account = account
        self.provider = provider
        self.scope = Scope.of(account.settings.get("scope"))
        self.auto = auto_rule.Options.of(account.settings)
        self._blocklist: auto_rule.Blocklist | None = None

    def pending_key(self, remote_id: str) -> str:
        """Stands in for the key of a message without Message-ID until its body is read."""
        return f"{self.provider}:{remote_id}"

    async def judge(self, candidates: list[Candidate], fetch_raw: RawFetcher) -> Judged:
        out = Judged()
        if not candidates:
            return out
        heads = await asyncio.to_thread(lambda: [parse_head(c.head) for c in candidates])
        keys = [
            self.pending_key(c.remote_id) if needs_body(h.envelope) else envelope_key(h.envelope)
            for c, h in zip(candidates, heads, strict=True)
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
        entering: dict[str, tuple[Head, str, tuple[Link, ...]]] = {}
        for c, head, key in zip(candidates, heads, keys, strict=True):
            if key in known:
                out.placing.append((c.remote_id, key))
                continue
            decision = decide_in_scope(
                self.scope, envelope_roles(head.envelope), book, in_crm_thread=key in in_crm
            )
            if decision.store:
                entering[c.remote_id] = (head, key, decision.links)
            else:
                assert decision.skip_reason is not None
                out.skipped[decision.skip_reason.value] += 1
        raws = await fetch_raw(list(entering), out.skipped)
        policy = account_policy(self.account.settings)
        for rid, raw in raws.items():
            head, key, links = entering[rid]
            if key == self.pending_key(rid):
                key = envelope_key(head.envelope, raw)
            parsed = await asyncio.to_thread(_parse, raw, head, policy)
            out.news.append((rid, mail.NewMessage(key, parsed, raw, links)))
        late = {n.dedup_key for _, n in out.news if n.dedup_key not in known}
        out.known = known | await self.db.read(lambda s: mail.known_keys(s, ws, late))
        return out


def _parse(raw: bytes, head: Head, policy: AttachmentPolicy) -> ParsedMessage:
    return limit_attachments(parse_message(raw, head=head), policy)


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """Headers as a header block, for the MIME layer's envelope parser."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (lines + "\r\n").encode("utf-8", "surrogateescape")


def worth(step: mail.FolderStep) -> bool:
    return bool(
        step.copies
        or step.flag_changes
        or step.removed_uids
        or step.skipped
        or step.highestmodseq is not None
        or step.import_floor is not None
        or step.import_complete is not None
    )


ClientT = TypeVar("ClientT")
LayoutT = TypeVar("LayoutT")


class OnMailbox(Generic[ClientT, LayoutT]):
    """A part of an API-mailbox session (ingest, sync-back): the account, its client,
    and the layout of its synced folders."""

    def __init__(
        self, db: Database, account: mail.AccountInfo, client: ClientT, layout: LayoutT
    ) -> None:
        self.db = db
        self.account = account
        self.client = client
        self.layout = layout

    async def _action_target(
        self, action: outbox.Action
    ) -> tuple[outbox.SyncChange, dict[str, str | None], list[outbox.Copy]]:
        """A sync action's change, the provider ids of its message (each with its
        thread), and the message's placements in this account."""
        assert action.message_id is not None
        message_id, account_id = action.message_id, self.account.id
        change = outbox.SyncChange.from_payload(action.payload)
        ids = await self.db.read(lambda s: remote.remote_ids_of(s, account_id, message_id))
        copies = await self.db.read(lambda s: outbox.copies(s, account_id, message_id))
        return change, ids, copies

    async def _record_syncback(
        self,
        action: outbox.Action,
        change: outbox.SyncChange,
        copies: list[outbox.Copy],
        moved: dict[int, tuple[str, int | None]],
        expunged: set[int],
    ) -> None:
        """What the provider did, made true in the CRM with the action's completion."""
        assert action.message_id is not None
        message_id, account_id, user_id = action.message_id, self.account.id, self.account.user_id
        flags = {c.placement_id: (c.flags | change.add) - change.remove for c in copies}
        await self.db.write(
            lambda s: mail.apply_syncback(
                s, account_id, user_id, action.id, message_id, flags, moved, expunged
            )
        )
