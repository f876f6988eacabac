"""Storage of synced mail: one transaction per sync step, so progress is never ahead of data.

The sync engine describes what it saw on the server as a :class:`FolderStep`; :func:`apply_step`
writes the new messages, placements, flag changes, removals, skip counts and the folder's
new cursor together. A crash before the commit loses the step and the next run redoes it;
the unique keys (workspace + dedup key, folder + UID) make a redo idempotent.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from crmail.domain.folders import Role
from crmail.domain.inbox import ItemState, is_read, next_state
from crmail.domain.scope import AddressBook, ContactRef, Link
from crmail.mime import ParsedMessage, normalize_subject
from crmail.storage import calendar_replies, item_sharing, notify, outbox
from crmail.storage.bulk import insert_rows
from crmail.storage.models import (
    Attachment,
    Base,
    Contact,
    ContactEmail,
    Deal,
    DealContact,
    Folder,
    InboxItem,
    MailAccount,
    Message,
    MessageRaw,
    MessageRef,
    Participant,
    Placement,
    Thread,
    TimelineEntry,
    User,
    utcnow,
)
from crmail.storage.thread_lookup import (
    advance_last_message,
    threads_by_message_id,
    threads_by_subject,
)

# --- what the sync engine hands over -------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store for the first time."""

    dedup_key: str
    parsed: ParsedMessage
    raw: bytes
    links: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class Copy:
    """A copy of a message found in a folder: new, or already stored (``new`` is None)."""

    uid: int
    flags: frozenset[str]
    modseq: int | None
    dedup_key: str
    internaldate: datetime | None = None
    new: NewMessage | None = None
    #: the provider's ids of the copy where it has them (Gmail: message id, threadId)
    remote_id: str | None = None
    remote_thread: str | None = None


@dataclass(frozen=True, slots=True)
class FlagChange:
    uid: int
    flags: frozenset[str]
    modseq: int | None


@dataclass(slots=True)
class FolderStep:
    folder_id: int
    copies: list[Copy] = field(default_factory=list)
    flag_changes: list[FlagChange] = field(default_factory=list)
    removed_uids: set[int] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)
    #: new cursor values; None leaves a field as it is
    uidnext: int | None = None
    highestmodseq: int | None = None
    import_floor: int | None = None
    import_complete: bool | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: int
    workspace_id: int
    user_id: int
    email: str
    provider: str
    settings: dict[str, object]
    secret: bytes
    state: str


@dataclass(frozen=True, slots=True)
class FolderInfo:
    id: int
    name: str
    role: Role
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    import_floor: int | None
    import_complete: bool


@dataclass(frozen=True, slots=True)
class StepResult:
    stored: int
    placed: int
    message_ids: tuple[int, ...]


# --- reads the sync engine needs -----------------------------------------------------------


def account_info(s: Session, account_id: int) -> AccountInfo:
    a = s.get_one(MailAccount, account_id)
    return AccountInfo(
        a.id, a.workspace_id, a.user_id, a.email, a.provider, dict(a.settings), a.secret, a.state
    )


def address_book(s: Session, workspace_id: int) -> AddressBook:
    leads = dict(
        s.execute(
            select(Contact.id, Contact.lead_id).where(Contact.workspace_id == workspace_id)
        ).all()
    )
    deals: dict[int, list[int]] = {}
    open_deals = (
        select(DealContact.contact_id, Deal.id)
        .join(Deal, Deal.id == DealContact.deal_id)
        .where(Deal.workspace_id == workspace_id, Deal.status == "open")
        .order_by(Deal.id)
    )
    for contact_id, deal_id in s.execute(open_deals).all():
        deals.setdefault(contact_id, []).append(deal_id)
    contacts = {
        email: ContactRef(cid, leads.get(cid), tuple(deals.get(cid, ())))
        for email, cid in s.execute(
            select(ContactEmail.email, ContactEmail.contact_id).where(
                ContactEmail.workspace_id == workspace_id
            )
        ).all()
    }
    own = set(s.scalars(select(User.email).where(User.workspace_id == workspace_id)))
    own |= set(s.scalars(select(MailAccount.email).where(MailAccount.workspace_id == workspace_id)))
    return AddressBook(contacts, frozenset(e.lower() for e in own))


def folders(s: Session, account_id: int) -> list[FolderInfo]:
    rows = s.scalars(select(Folder).where(Folder.account_id == account_id).order_by(Folder.id))
    return [_folder_info(f) for f in rows]


def _folder_info(f: Folder) -> FolderInfo:
    return FolderInfo(
        f.id,
        f.name,
        Role(f.role),
        f.uidvalidity,
        f.uidnext,
        f.highestmodseq,
        f.import_floor,
        f.import_complete,
    )


def ensure_folders(
    s: Session, account_id: int, wanted: Iterable[tuple[str, Role]]
) -> list[FolderInfo]:
    existing = {f.name: f for f in s.scalars(select(Folder).where(Folder.account_id == account_id))}
    for name, role in wanted:
        f = existing.get(name)
        if f is None:
            f = Folder(account_id=account_id, name=name, role=role.value, skipped={})
            s.add(f)
            existing[name] = f
        elif f.role != role.value:
            f.role = role.value
    s.flush()
    return [_folder_info(f) for f in existing.values() if f.name in {n for n, _ in wanted}]


def known_keys(s: Session, workspace_id: int, keys: Iterable[str]) -> set[str]:
    return set(_message_ids(s, workspace_id, set(keys)))


def placed_uids(s: Session, folder_id: int) -> set[int]:
    return set(s.scalars(select(Placement.uid).where(Placement.folder_id == folder_id)))


# --- folder cursor resets --------------------------------------------------------------------


def start_folder(
    s: Session,
    folder_id: int,
    *,
    uidvalidity: int,
    uidnext: int,
    highestmodseq: int | None,
    total: int,
) -> FolderInfo:
    """Begin (or, after a UIDVALIDITY change, restart) a folder's sync from scratch.

    Placements of the old UIDVALIDITY are dropped: their UIDs mean nothing any more. The
    messages stay; re-import finds them by dedup key and places them again without
    storing them twice.
    """
    f = s.get_one(Folder, folder_id)
    if f.uidvalidity is not None and f.uidvalidity != uidvalidity:
        # Inbox items stay while the folder is re-read (no flicker); they are
        # re-checked against the new placements when the import completes.
        s.execute(delete(Placement).where(Placement.folder_id == folder_id))
    f.uidvalidity = uidvalidity
    f.uidnext = uidnext
    f.highestmodseq = highestmodseq
    f.import_floor = uidnext
    f.import_total = total
    f.import_done = 0
    f.import_complete = total == 0
    s.flush()
    return _folder_info(f)


# --- the write path ---------------------------------------------------------------------------


def apply_step(s: Session, account_id: int, step: FolderStep) -> StepResult:
    account = s.get_one(MailAccount, account_id)
    folder = s.get_one(Folder, step.folder_id)
    ws = account.workspace_id

    stored = _store(s, ws, [c.new for c in step.copies if c.new is not None])
    stored_ids = [m.id for m in stored.values()]
    ids_by_key = {key: m.id for key, m in stored.items()}
    ids_by_key.update(_message_ids(s, ws, {c.dedup_key for c in step.copies} - stored.keys()))
    touched: set[int] = set()

    placements: list[dict[str, Any]] = []
    for c in step.copies:
        mid = ids_by_key.get(c.dedup_key)
        if mid is None:  # pragma: no cover - a known key vanished: never deleted by sync
            continue
        placements.append(
            {
                "message_id": mid,
                "account_id": account_id,
                "folder_id": folder.id,
                "uid": c.uid,
                "flags": sorted(c.flags),
                "modseq": c.modseq,
                "remote_id": c.remote_id,
                "remote_thread": c.remote_thread,
            }
        )
    already = (
        set(
            s.scalars(
                select(Placement.uid).where(
                    Placement.folder_id == folder.id,
                    Placement.uid.in_([p["uid"] for p in placements]),
                )
            )
        )
        if placements
        else set()
    )
    fresh = [p for p in placements if p["uid"] not in already]
    insert_rows(s, Placement, fresh)
    # Messages stored by this step have no other copy, Inbox item or pending action
    # yet: their items, and the items' sharing flag, follow from this step alone, with
    # no query.
    new_ids = set(stored_ids)
    touched.update(p["message_id"] for p in placements if p["message_id"] not in new_ids)
    if folder.role == Role.INBOX.value:
        _open_items(s, account, stored, [p for p in fresh if p["message_id"] in new_ids])

    for change in step.flag_changes:
        res = s.execute(
            update(Placement)
            .where(Placement.folder_id == folder.id, Placement.uid == change.uid)
            .values(flags=sorted(change.flags), modseq=change.modseq)
            .returning(Placement.message_id)
        )
        touched.update(res.scalars())

    for chunk in _chunks(sorted(step.removed_uids), 500):
        res = s.execute(
            delete(Placement)
            .where(Placement.folder_id == folder.id, Placement.uid.in_(chunk))
            .returning(Placement.message_id)
        )
        touched.update(res.scalars())

    if step.import_complete and not folder.import_complete and folder.role == Role.INBOX.value:
        # After a (re-)import, items whose message did not come back left INBOX meanwhile.
        in_inbox = in_user_inbox(account.user_id, Placement.id).where(
            Placement.message_id == InboxItem.message_id
        )
        touched.update(
            s.scalars(
                select(InboxItem.message_id).where(
                    InboxItem.user_id == account.user_id,
                    InboxItem.state == ItemState.OPEN.value,
                    ~in_inbox.exists(),
                )
            )
        )
    if touched:
        _refresh_inbox(s, account.user_id, ws, touched)
    # New copies and items may show a known message to other members: their items' flag
    # (a message stored now got its flag with its item, see _open_items).
    item_sharing.refresh(s, touched)

    _advance_folder(folder, step, len(step.copies))
    account.last_sync_at = utcnow()
    # Webhooks, in this same transaction: they exist only if the step commits.
    notify.messages_received(s, ws, account_id, folder.name, stored_ids)
    notify.links_created(s, ws, stored_ids)
    notify.skipped(s, ws, account_id, folder.name, dict(step.skipped))
    return StepResult(len(stored_ids), len(fresh), tuple(sorted(touched | new_ids)))


def apply_syncback(
    s: Session,
    account_id: int,
    user_id: int,
    action_id: int,
    message_id: int,
    flags: dict[int, frozenset[str]],
    moved: dict[int, tuple[str, int | None]],
    expunged: set[int],
) -> None:
    """Record what a syncback action did to the server copies, and complete the action."""
    for pid, new_flags in flags.items():
        s.execute(update(Placement).where(Placement.id == pid).values(flags=sorted(new_flags)))
    folder_ids = dict(
        s.execute(select(Folder.name, Folder.id).where(Folder.account_id == account_id)).all()
    )
    for pid, (dest, uid) in moved.items():
        target = folder_ids.get(dest)
        taken = (
            target is not None
            and uid is not None
            and s.scalar(
                select(Placement.id).where(Placement.folder_id == target, Placement.uid == uid)
            )
        )
        if target is None or uid is None or taken:
            # Not a synced folder, no COPYUID, or the destination's sync got there first.
            s.execute(delete(Placement).where(Placement.id == pid))
        else:
            s.execute(
                update(Placement).where(Placement.id == pid).values(folder_id=target, uid=uid)
            )
    if expunged:
        s.execute(delete(Placement).where(Placement.id.in_(sorted(expunged))))
    outbox.complete(s, action_id)
    ws = s.get_one(MailAccount, account_id).workspace_id
    _refresh_inbox(s, user_id, ws, {message_id})


def _advance_folder(folder: Folder, step: FolderStep, copies: int) -> None:
    skipped = dict(folder.skipped or {})
    for reason, n in step.skipped.items():
        skipped[reason] = skipped.get(reason, 0) + n
    folder.skipped = skipped
    folder.synced += copies
    if step.import_floor is not None:
        folder.import_done += copies + sum(step.skipped.values())
        folder.import_floor = step.import_floor
    if step.uidnext is not None:
        folder.uidnext = step.uidnext
    if step.highestmodseq is not None:
        folder.highestmodseq = step.highestmodseq
    if step.import_complete is not None:
        folder.import_complete = step.import_complete
    folder.last_sync_at = utcnow()


def _message_ids(s: Session, ws: int, keys: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(keys), 500):
        out.update(
            s.execute(
                select(Message.dedup_key, Message.id).where(
                    Message.workspace_id == ws, Message.dedup_key.in_(chunk)
                )
            ).all()
        )
    return out


def store_messages(s: Session, ws: int, news: list[NewMessage]) -> list[int]:
    """Insert messages not stored yet, with their threads, participants and links;
    the ids of those stored now."""
    return [m.id for m in _store(s, ws, news).values()]


@dataclass(frozen=True, slots=True)
class _Stored:
    id: int
    thread_id: int
    sent_at: datetime | None
    linked: bool


def _store(s: Session, ws: int, news: list[NewMessage]) -> dict[str, _Stored]:
    """Set-based (a few statements per batch, not per message): imports write thousands
    of messages a second. Text from mail is cut to the columns' sizes: PostgreSQL
    enforces them, and one overlong name must not stop a mailbox's sync.
    """
    if not news:
        return {}
    # A redo after a crash, or two folders in one step, may bring a key twice.
    unique: dict[str, NewMessage] = {}
    for n in news:
        unique.setdefault(n.dedup_key, n)
    for key in known_keys(s, ws, unique):
        unique.pop(key)
    if not unique:
        return {}
    items = list(unique.values())
    threader = _Threader(s, ws, items)
    thread_ids = threader.assign(items)
    values = []
    # Set here rather than by the column default: timeline entries copy the date.
    now = utcnow()
    for n, tid in zip(items, thread_ids, strict=True):
        env = n.parsed.envelope
        sender = env.from_[0] if env.from_ else None
        values.append(
            {
                "workspace_id": ws,
                "thread_id": tid,
                "dedup_key": n.dedup_key,
                "message_id": env.message_id,
                "subject": env.subject,
                "from_email": sender.email if sender else None,
                "from_name": sender.name[:300] if sender else "",
                "sent_at": env.date,
                "received_at": now,
                "snippet": n.parsed.snippet(),
                "size": n.parsed.size,
                "is_bulk": env.is_bulk,
                "parse_failed": n.parsed.parse_failed,
                "defects": list(n.parsed.defects)[:50],
            }
        )
    # One multi-row INSERT, then the ids by their unique key: ordered RETURNING would
    # make SQLite insert row by row.
    insert_rows(s, Message, values)
    by_key = _message_ids(s, ws, set(unique))
    ids = [by_key[n.dedup_key] for n in items]
    raw: list[dict[str, object]] = []
    refs: list[dict[str, object]] = []
    parts: list[dict[str, object]] = []
    atts: list[dict[str, object]] = []
    links: list[dict[str, object]] = []
    for mid, n in zip(ids, items, strict=True):
        env = n.parsed.envelope
        raw.append({"message_id": mid, "raw": n.raw})
        for ref in dict.fromkeys((*env.in_reply_to, *env.references)):
            refs.append({"message_id": mid, "ref": ref[:998], "workspace_id": ws})
        for role, addrs in (
            ("from", env.from_),
            ("to", env.to),
            ("cc", env.cc),
            ("bcc", env.bcc),
            ("reply_to", env.reply_to),
        ):
            for pos, addr in enumerate(addrs):
                parts.append(
                    {
                        "message_id": mid,
                        "role": role,
                        "position": pos,
                        "email": addr.email,
                        "name": addr.name[:300],
                    }
                )
        for att in n.parsed.attachments:
            atts.append(
                {
                    "message_id": mid,
                    "filename": att.filename[:500] if att.filename else None,
                    "content_type": att.content_type[:200],
                    "size": att.size,
                    "content_id": att.content_id[:500] if att.content_id else None,
                    "inline": att.inline,
                    "placeholder_reason": att.placeholder_reason,
                }
            )
        for link in n.links:
            links.append(
                {
                    "workspace_id": ws,
                    "message_id": mid,
                    "subject_type": link.subject_type,
                    "subject_id": link.subject_id,
                    "reason": link.reason[:200],
                    "message_date": n.parsed.envelope.date or now,
                }
            )
    tables: tuple[tuple[type[Base], list[dict[str, object]]], ...] = (
        (MessageRaw, raw),
        (MessageRef, refs),
        (Participant, parts),
        (Attachment, atts),
        (TimelineEntry, links),
    )
    for model, rows in tables:
        insert_rows(s, model, rows)
    # Attendee answers to meetings (iMIP REPLY) update the meeting as the mail arrives.
    calendar_replies.apply_replies(s, ws, (n.raw for n in items))
    return {
        n.dedup_key: _Stored(mid, tid, n.parsed.envelope.date, bool(n.links))
        for mid, tid, n in zip(ids, thread_ids, items, strict=True)
    }


def _open_items(
    s: Session, account: MailAccount, stored: dict[str, _Stored], copies: list[dict[str, Any]]
) -> None:
    """Inbox items for messages this step stored with copies in the account's INBOX."""
    by_id = {m.id: m for m in stored.values()}
    read: dict[int, bool] = {}
    for c in copies:
        read[c["message_id"]] = read.get(c["message_id"], False) or is_read(c["flags"])
    archives = bool((account.settings or {}).get("archive_on_done", True))
    state = next_state(None, True, done_archives=archives)
    if state is None:  # pragma: no cover - a message in INBOX always opens an item
        return
    rows = []
    for mid, is_read_now in read.items():
        m = by_id[mid]
        row = _new_item(
            s,
            account.workspace_id,
            account.user_id,
            mid,
            m.thread_id,
            m.sent_at,
            state,
            is_read_now,
        )
        # A new message's only other viewers are its timeline's: its copies are all in
        # this account, and mail fetched from a mailbox has no CRM sender.
        row["shared"] = m.linked
        rows.append(row)
    insert_rows(s, InboxItem, rows)


_PROCESS_TAG = secrets.token_hex(4)
_ROOT_COUNTER = itertools.count()


def _root_key() -> str:
    """A key to find a new thread again after the batch's one INSERT: ordered by time
    (then this process's random tag and a counter, so processes never collide), so it
    lands in the last leaf of ``(workspace, root_key)``. The starting message's dedup key
    served before, and being random it cost a big workspace's import a leaf page per new
    thread (issue 14)."""
    return f"t{time.time_ns():016x}{_PROCESS_TAG}{next(_ROOT_COUNTER) & 0xFFFFFFFF:08x}"


class _Pending:
    """A thread to create at the end of the batch (union-find node: ``parent`` when merged)."""

    __slots__ = ("id", "key", "parent", "root_key", "subject")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.root_key = _root_key()
        self.key = normalize_subject(subject)[:200]
        self.parent: int | _Pending | None = None
        self.id: int | None = None


ThreadRef = int | _Pending


def _find(ref: ThreadRef) -> ThreadRef:
    while isinstance(ref, _Pending) and ref.parent is not None:
        ref = ref.parent
    return ref


class _Threader:
    """Puts new messages in threads: by Message-ID links first, by subject as a last resort.

    Imports run newest first, so a reply often arrives before what it answers; a
    message therefore joins the thread of messages it references *and* of messages
    that reference it, merging threads that turn out to be one. Threads new in this
    batch are created together at the end.
    """

    def __init__(self, s: Session, ws: int, news: list[NewMessage]) -> None:
        self.s = s
        self.ws = ws
        own_ids = {n.parsed.envelope.message_id for n in news if n.parsed.envelope.message_id}
        refs = {
            r for n in news for r in (*n.parsed.envelope.in_reply_to, *n.parsed.envelope.references)
        }
        self.by_msgid: dict[str, ThreadRef] = dict(threads_by_message_id(s, ws, own_ids | refs))
        self.children: dict[str, set[ThreadRef]] = {}
        #: threads merged away in this batch -> the thread they went into
        self.merged: dict[int, int] = {}
        #: index of a message in the batch -> the thread its subject would join
        self.by_subject: dict[int, int] = {}
        for chunk in _chunks(sorted(own_ids), 500):
            q = (
                select(MessageRef.ref, Message.thread_id)
                .join(Message, Message.id == MessageRef.message_id)
                .where(MessageRef.workspace_id == ws, MessageRef.ref.in_(chunk))
            )
            for ref, tid in s.execute(q).all():
                self.children.setdefault(ref, set()).add(tid)

    def assign(self, news: list[NewMessage]) -> list[int]:
        self._prefetch_subjects(news)
        refs = [self._thread_for(i, n) for i, n in enumerate(news)]
        finals = [_find(r) for r in refs]
        latest: dict[ThreadRef, datetime] = {}
        for root, n in zip(finals, news, strict=True):
            when = n.parsed.envelope.date
            if when is not None and (root not in latest or when > latest[root]):
                latest[root] = when
        roots = list(dict.fromkeys(r for r in finals if isinstance(r, _Pending)))
        if roots:
            insert_rows(
                self.s,
                Thread,
                [
                    {
                        "workspace_id": self.ws,
                        "subject": p.subject,
                        "subject_key": p.key,
                        "last_message_at": latest.get(p),
                        "root_key": p.root_key,
                    }
                    for p in roots
                ],
            )
            ids: dict[str | None, int] = {}
            for chunk in _chunks([p.root_key for p in roots], 500):
                ids.update(
                    self.s.execute(
                        select(Thread.root_key, Thread.id).where(
                            Thread.workspace_id == self.ws, Thread.root_key.in_(chunk)
                        )
                    ).all()
                )
            for p in roots:
                p.id = ids[p.root_key]
        # Threads that existed before: their last-message time may move forward.
        advance_last_message(
            self.s, {root: when for root, when in latest.items() if isinstance(root, int)}
        )
        return [r if isinstance(r, int) else r.id or 0 for r in finals]

    def _prefetch_subjects(self, news: list[NewMessage]) -> None:
        """The threads each reply-like subject of the batch would join by subject, in one
        statement. Asked for every message that may need it (whether it does depends on
        the messages before it in the batch): a few spare lookups cost less than a
        statement per reply."""
        wanted: list[tuple[int, str, datetime]] = []
        for i, n in enumerate(news):
            env = n.parsed.envelope
            key = normalize_subject(env.subject)[:200]
            # Only a subject that says it is a reply or forward may join by subject alone.
            if key and key != env.subject.strip().casefold() and env.date is not None:
                wanted.append((i, key, env.date))
        found = threads_by_subject(self.s, self.ws, [(key, when) for _, key, when in wanted])
        self.by_subject = {
            i: tid for (i, _, _), tid in zip(wanted, found, strict=True) if tid is not None
        }

    def _thread_for(self, index: int, n: NewMessage) -> ThreadRef:
        env = n.parsed.envelope
        found: set[ThreadRef] = set()
        for ref in (*env.in_reply_to, *env.references):
            if ref in self.by_msgid:
                found.add(_find(self.by_msgid[ref]))
        if env.message_id:
            found |= {_find(t) for t in self.children.get(env.message_id, set())}
        if not found and index in self.by_subject:
            found.add(self._current(self.by_subject[index]))
        existing = sorted(t for t in found if isinstance(t, int))
        pending = [t for t in found if isinstance(t, _Pending)]
        tid: ThreadRef
        if existing:
            tid = existing[0]
            for other in existing[1:]:
                self._merge(other, into=tid)
            for p in pending:
                p.parent = tid
        elif pending:
            tid = pending[0]
            for p in pending[1:]:
                p.parent = tid
        else:
            tid = _Pending(env.subject)
        if env.message_id:
            self.by_msgid[env.message_id] = tid
        for ref in (*env.in_reply_to, *env.references):
            self.children.setdefault(ref, set()).add(tid)
        return tid

    def _current(self, tid: int) -> int:
        """The thread ``tid`` became after the merges of this batch."""
        while tid in self.merged:
            tid = self.merged[tid]
        return tid

    def _merge(self, other: int, *, into: int) -> None:
        s = self.s
        quick = {"synchronize_session": False}
        s.execute(
            update(Message).where(Message.thread_id == other).values(thread_id=into),
            execution_options=quick,
        )
        s.execute(
            update(InboxItem).where(InboxItem.thread_id == other).values(thread_id=into),
            execution_options=quick,
        )
        s.execute(delete(Thread).where(Thread.id == other))
        self.merged[other] = into
        for msgid, tid in list(self.by_msgid.items()):
            if tid == other:
                self.by_msgid[msgid] = into
        for tids in self.children.values():
            if other in tids:
                tids.discard(other)
                tids.add(into)


def in_user_inbox(user_id: int, *columns: Any) -> Select[Any]:
    """``columns`` of the placements in the INBOX of any of the user's accounts."""
    return (
        select(*columns)
        .select_from(Placement)
        .join(Folder, Folder.id == Placement.folder_id)
        .join(MailAccount, MailAccount.id == Placement.account_id)
        .where(MailAccount.user_id == user_id, Folder.role == Role.INBOX.value)
    )


def _refresh_inbox(s: Session, user_id: int, ws: int, message_ids: set[int]) -> None:
    """Recompute the owner's Inbox items for messages whose placements changed.

    Messages with a CRM action still on its way to the server are left alone: the
    state the user just chose stands until the server has caught up (no flip-flop).
    """
    archives = {
        account_id: bool((cfg or {}).get("archive_on_done", True))
        for account_id, cfg in s.execute(
            select(MailAccount.id, MailAccount.settings).where(MailAccount.user_id == user_id)
        ).all()
    }
    my_accounts = list(archives)
    ids = sorted(message_ids - outbox.pending_message_ids(s, my_accounts, message_ids))
    inbox_copies: dict[int, list[tuple[list[str], bool]]] = {}
    for chunk in _chunks(ids, 500):
        q = in_user_inbox(
            user_id, Placement.message_id, Placement.flags, Placement.account_id
        ).where(Placement.message_id.in_(chunk))
        for mid, flags, account_id in s.execute(q).all():
            inbox_copies.setdefault(mid, []).append((flags, archives[account_id]))
    items = {
        i.message_id: i
        for chunk in _chunks(ids, 500)
        for i in s.scalars(
            select(InboxItem).where(InboxItem.user_id == user_id, InboxItem.message_id.in_(chunk))
        )
    }
    missing = [mid for mid in ids if mid not in items and mid in inbox_copies]
    meta = {}
    for chunk in _chunks(missing, 500):
        meta.update(
            {
                mid: (tid, sent)
                for mid, tid, sent in s.execute(
                    select(Message.id, Message.thread_id, Message.sent_at).where(
                        Message.id.in_(chunk)
                    )
                ).all()
            }
        )
    new_items: list[dict[str, object]] = []
    for mid in ids:
        item = items.get(mid)
        copies = inbox_copies.get(mid, [])
        current = ItemState(item.state) if item else None
        state = next_state(current, bool(copies), done_archives=any(a for _, a in copies))
        if state is None:
            continue
        read = any(is_read(f) for f, _ in copies) if copies else (item.is_read if item else False)
        if item is None:
            tid, sent = meta[mid]
            new_items.append(_new_item(s, ws, user_id, mid, tid, sent, state, read))
            continue
        if item.state == state.value and item.is_read == read:
            continue
        item.state = state.value
        item.is_read = read
        notify.item_updated(s, item)
    insert_rows(s, InboxItem, new_items)


def _new_item(
    s: Session,
    ws: int,
    user_id: int,
    message_id: int,
    thread_id: int,
    sent_at: datetime | None,
    state: ItemState,
    read: bool,
) -> dict[str, object]:
    """The row of a new Inbox item, announced (``inbox.updated``) in this transaction."""
    notify.inbox_updated(
        s,
        ws,
        user_id=user_id,
        message_id=message_id,
        thread_id=thread_id,
        state=state.value,
        is_read=read,
    )
    return {
        "workspace_id": ws,
        "user_id": user_id,
        "message_id": message_id,
        "thread_id": thread_id,
        "is_read": read,
        "state": state.value,
        "received_at": sent_at or utcnow(),
    }


def _chunks(items: list[object] | list[int] | list[str], size: int):  # type: ignore[no-untyped-def]
    for i in range(0, len(items), size):
        yield items[i : i + size]


def count_messages(s: Session, workspace_id: int) -> int:
    return (
        s.scalar(
            select(func.count()).select_from(Message).where(Message.workspace_id == workspace_id)
        )
        or 0
    )
