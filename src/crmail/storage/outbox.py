"""The outbox: changes the CRM owes a mail server, durable in the CRM change's own transaction.

A user's action (Done, mark read, delete, move, send) changes the CRM at once and queues
what the server must do. The sync worker drains each account's queue in order and retries
with backoff. Pending "sync" actions on one message collapse into one desired state:
marking read then unread before the worker ran sends nothing contradictory.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from crmail.storage.models import Folder, Message, OutboxAction, Placement, User, utcnow

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
#: attempts before an action is given up and shown as failed
MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class SyncChange:
    """The desired server-side change for one message in one account."""

    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    #: move the copies to the folder of this role ("archive", "trash") or name
    move_to_role: str | None = None
    move_to: str | None = None
    #: only copies in folders of this role are touched (Done touches INBOX copies only)
    from_role: str | None = None
    #: delete for good (copies already in Trash or Junk)
    expunge: bool = False

    def merged(self, later: SyncChange) -> SyncChange:
        """This change followed by ``later``, as one change."""
        add = (self.add - later.remove) | later.add
        remove = (self.remove - later.add) | later.remove
        moving = later.move_to_role or later.move_to or later.expunge
        return SyncChange(
            add=frozenset(add),
            remove=frozenset(remove),
            move_to_role=later.move_to_role if moving else self.move_to_role,
            move_to=later.move_to if moving else self.move_to,
            from_role=later.from_role if moving else self.from_role,
            expunge=later.expunge or (self.expunge and not moving),
        )

    def to_payload(self) -> dict[str, object]:
        return {
            "add": sorted(self.add),
            "remove": sorted(self.remove),
            "move_to_role": self.move_to_role,
            "move_to": self.move_to,
            "from_role": self.from_role,
            "expunge": self.expunge,
        }

    @classmethod
    def from_payload(cls, p: dict[str, object]) -> SyncChange:
        def strs(key: str) -> frozenset[str]:
            v = p.get(key) or []
            return frozenset(str(x) for x in v) if isinstance(v, list) else frozenset()

        return cls(
            add=strs("add"),
            remove=strs("remove"),
            move_to_role=str(p["move_to_role"]) if p.get("move_to_role") else None,
            move_to=str(p["move_to"]) if p.get("move_to") else None,
            from_role=str(p["from_role"]) if p.get("from_role") else None,
            expunge=bool(p.get("expunge")),
        )


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    workspace_id: int
    account_id: int | None
    user_id: int | None
    message_id: int | None
    kind: str
    payload: dict[str, object]
    attempts: int


def _queue_of(account_id: int | None) -> ColumnElement[bool]:
    """The actions of one account's queue (None: the default sending provider's)."""
    if account_id is None:
        return OutboxAction.account_id.is_(None)
    return OutboxAction.account_id == account_id


def _may_run() -> ColumnElement[bool]:
    """Actions not queued by a disabled user: theirs wait (kept) until they are enabled.

    The default sending provider's queue is shared, so its drainer skips them here; an
    account's queue has no worker at all while its owner is disabled, and this keeps a
    worker still winding down from starting one more.
    """
    disabled = select(User.id).where(User.disabled_at.is_not(None))
    return OutboxAction.user_id.is_(None) | OutboxAction.user_id.not_in(disabled)


def enqueue_sync(
    s: Session,
    *,
    workspace_id: int,
    account_id: int,
    user_id: int,
    message_id: int,
    change: SyncChange,
) -> int:
    """Queue ``change``; merged into a pending change of the same message if there is one."""
    pending = s.scalar(
        select(OutboxAction)
        .where(
            OutboxAction.account_id == account_id,
            OutboxAction.message_id == message_id,
            OutboxAction.kind == "sync",
            OutboxAction.state == PENDING,
        )
        .order_by(OutboxAction.id.desc())
        .limit(1)
    )
    if pending is not None:
        pending.payload = SyncChange.from_payload(pending.payload).merged(change).to_payload()
        return pending.id
    a = OutboxAction(
        workspace_id=workspace_id,
        account_id=account_id,
        user_id=user_id,
        message_id=message_id,
        kind="sync",
        payload=change.to_payload(),
        state=PENDING,
        next_attempt_at=utcnow(),
    )
    s.add(a)
    s.flush()
    return a.id


def enqueue(
    s: Session,
    *,
    workspace_id: int,
    account_id: int | None,
    user_id: int | None,
    message_id: int | None,
    kind: str,
    payload: dict[str, object],
) -> int:
    a = OutboxAction(
        workspace_id=workspace_id,
        account_id=account_id,
        user_id=user_id,
        message_id=message_id,
        kind=kind,
        payload=payload,
        state=PENDING,
        next_attempt_at=utcnow(),
    )
    s.add(a)
    s.flush()
    return a.id


def claim_next(s: Session, account_id: int | None, now: datetime | None = None) -> Action | None:
    """The oldest due action of the account, marked running (one drainer per account)."""
    now = now or utcnow()
    a = s.scalar(
        select(OutboxAction)
        .where(
            _queue_of(account_id),
            OutboxAction.state == PENDING,
            OutboxAction.next_attempt_at <= now,
            _may_run(),
        )
        .order_by(OutboxAction.id)
        .limit(1)
        # Atomic across processes (PostgreSQL): a row another drainer is claiming is
        # skipped, not waited for and taken a second time.
        .with_for_update(skip_locked=True)
    )
    if a is None:
        return None
    a.state = RUNNING
    a.attempts += 1
    return _action(a)


def recover_running(s: Session, account_id: int | None) -> list[Action]:
    """Actions left running by a crash: the caller decides how each kind resumes."""
    rows = s.scalars(
        select(OutboxAction)
        .where(
            _queue_of(account_id),
            OutboxAction.state == RUNNING,
        )
        .order_by(OutboxAction.id)
    )
    return [_action(a) for a in rows]


def requeue_running(
    s: Session, account_id: int | None, kinds: tuple[str, ...] = ("sync", "send")
) -> int:
    """After a crash, actions left running go back to the queue.

    Sync actions are idempotent; a send resumes from the stage it recorded (see
    :mod:`crmail.sync.sending`), which never hands a message to SMTP twice.
    """
    res = s.execute(
        update(OutboxAction)
        .where(
            _queue_of(account_id),
            OutboxAction.state == RUNNING,
            OutboxAction.kind.in_(kinds),
        )
        .values(state=PENDING)
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def next_due(s: Session, account_id: int | None) -> datetime | None:
    return s.scalar(
        select(OutboxAction.next_attempt_at)
        .where(
            _queue_of(account_id),
            OutboxAction.state == PENDING,
            _may_run(),
        )
        .order_by(OutboxAction.next_attempt_at)
        .limit(1)
    )


def complete(s: Session, action_id: int, payload: dict[str, object] | None = None) -> None:
    values: dict[str, object] = {"state": DONE, "last_error": None}
    if payload is not None:
        values["payload"] = payload
    s.execute(update(OutboxAction).where(OutboxAction.id == action_id).values(**values))


def save_progress(s: Session, action_id: int, payload: dict[str, object]) -> None:
    """Record how far a multi-step action got (e.g. "smtp accepted"), keeping it running."""
    s.execute(update(OutboxAction).where(OutboxAction.id == action_id).values(payload=payload))


def fail(
    s: Session, action_id: int, error: str, *, retryable: bool, now: datetime | None = None
) -> str:
    """Record a failure: back to pending with exponential backoff, or failed for good."""
    a = s.get_one(OutboxAction, action_id)
    a.last_error = error[:2000]
    if retryable and a.attempts < MAX_ATTEMPTS:
        delay = min(3600.0, 2.0**a.attempts) * random.uniform(0.5, 1.0)
        a.state = PENDING
        a.next_attempt_at = (now or utcnow()) + timedelta(seconds=delay)
    else:
        a.state = FAILED
    return a.state


def retry_now(s: Session, action_id: int) -> None:
    s.execute(
        update(OutboxAction)
        .where(OutboxAction.id == action_id, OutboxAction.state.in_([PENDING, FAILED]))
        .values(state=PENDING, next_attempt_at=utcnow(), attempts=0)
    )


def pending_message_ids(
    s: Session, account_ids: Iterable[int], message_ids: Iterable[int]
) -> set[int]:
    """Messages with a queued or running sync action in these accounts: inbound sync must
    not overwrite the CRM state the user just set (no flip-flop)."""
    accounts, messages = list(account_ids), list(message_ids)
    if not accounts or not messages:
        return set()
    found: set[int] = set()
    for i in range(0, len(messages), 500):
        found.update(
            m
            for m in s.scalars(
                select(OutboxAction.message_id).where(
                    OutboxAction.account_id.in_(accounts),
                    OutboxAction.message_id.in_(messages[i : i + 500]),
                    OutboxAction.kind == "sync",
                    OutboxAction.state.in_([PENDING, RUNNING]),
                )
            )
            if m is not None
        )
    return found


@dataclass(frozen=True, slots=True)
class Copy:
    placement_id: int
    folder_id: int
    folder: str
    role: str
    uid: int
    flags: frozenset[str]


def copies(s: Session, account_id: int, message_id: int) -> list[Copy]:
    rows = s.execute(
        select(Placement.id, Folder.id, Folder.name, Folder.role, Placement.uid, Placement.flags)
        .join(Folder, Folder.id == Placement.folder_id)
        .where(Placement.account_id == account_id, Placement.message_id == message_id)
        .order_by(Placement.id)
    ).all()
    return [
        Copy(pid, fid, name, role, uid, frozenset(flags or ()))
        for pid, fid, name, role, uid, flags in rows
    ]


def _action(a: OutboxAction) -> Action:
    return Action(
        a.id,
        a.workspace_id,
        a.account_id,
        a.user_id,
        a.message_id,
        a.kind,
        dict(a.payload),
        a.attempts,
    )


def message_id_header(s: Session, message_id: int) -> str | None:
    return s.scalar(select(Message.message_id).where(Message.id == message_id))


def sync_errors(s: Session, user_id: int, message_ids: Iterable[int]) -> dict[int, str]:
    """Why the user's last change to each message could not reach the server, for
    messages whose last change failed for good (a newer change clears the error)."""
    messages = list(message_ids)
    last: dict[int, tuple[str, str | None]] = {}
    for i in range(0, len(messages), 500):
        for mid, state, error in s.execute(
            select(OutboxAction.message_id, OutboxAction.state, OutboxAction.last_error)
            .where(
                OutboxAction.user_id == user_id,
                OutboxAction.message_id.in_(messages[i : i + 500]),
                OutboxAction.kind == "sync",
            )
            .order_by(OutboxAction.id)
        ).all():
            if mid is not None:
                last[mid] = (state, error)
    return {
        mid: error or "the change could not be made on the server"
        for mid, (state, error) in last.items()
        if state == FAILED
    }
