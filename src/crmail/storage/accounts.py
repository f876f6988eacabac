"""Mail accounts: creation, life cycle (update, reconnect, disconnect, delete), sync status.

The API and the web settings page both change accounts through the functions here, so
the rules (who may, what happens to cursors, data and queued work) live in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crmail.domain.account import ACTIVE, AccountEvent, AccountState, IllegalTransition, transition
from crmail.domain.folders import Role
from crmail.domain.inbox import ItemState
from crmail.errors import Conflict, CrmailError, Forbidden, InvalidInput, NotFound
from crmail.storage import mail, notify
from crmail.storage.models import (
    Folder,
    GraphSubscription,
    InboxItem,
    MailAccount,
    Message,
    OutboxAction,
    Placement,
    User,
    utcnow,
)
from crmail.storage.views import UserInfo


def create_account(
    s: Session,
    *,
    workspace_id: int,
    user_id: int,
    email: str,
    provider: str,
    settings: dict[str, object],
    secret: bytes,
) -> int:
    a = MailAccount(
        workspace_id=workspace_id,
        user_id=user_id,
        email=email.lower(),
        provider=provider,
        settings=settings,
        secret=secret,
        state=AccountState.NEW.value,
    )
    s.add(a)
    s.flush()
    return a.id


def get(s: Session, account_id: int) -> MailAccount:
    a = s.get(MailAccount, account_id)
    if a is None:
        raise NotFound(f"mail account {account_id} not found")
    return a


def record_event(
    s: Session, account_id: int, event: AccountEvent, error: CrmailError | None = None
) -> AccountState:
    """Move the account's state machine; an error (or its absence) is recorded with it."""
    a = get(s, account_id)
    old = a.state
    state = transition(AccountState(old), event)
    a.state = state.value
    if error is not None:
        a.last_error = _reason(error)
        a.last_error_code = error.code
    elif event in (AccountEvent.CONNECTED_IMPORTING, AccountEvent.CONNECTED_LIVE):
        a.last_error = None
        a.last_error_code = None
    if state.value != old:
        # Only real changes: the worker repeats START/NETWORK_FAILED while retrying.
        notify.account_state_changed(
            s,
            a.workspace_id,
            account_id=a.id,
            user_id=a.user_id,
            old=old,
            new=state.value,
            error_code=error.code if error is not None else None,
        )
    return state


def try_event(
    s: Session, account_id: int, event: AccountEvent, error: CrmailError | None = None
) -> AccountState | None:
    """Like :func:`record_event`, but an event the current state ignores changes nothing.

    The worker reports what it sees; a user's disconnect may have won the race.
    """
    try:
        return record_event(s, account_id, event, error)
    except IllegalTransition:
        return None


def auth_failed(
    s: Session, account_id: int, error: CrmailError, used_secret: bytes | None
) -> AccountState | None:
    """The server refused the credentials a worker logged in with: pause (AUTH_ERROR).

    Ignored when the owner replaced the credentials meanwhile (a reconnect raced the
    old session's last login): the refusal is about a password no longer in use, and
    recording it would pause the account the owner has just fixed.
    """
    a = s.get(MailAccount, account_id)
    if a is None or (used_secret is not None and a.secret != used_secret):
        return None
    return try_event(s, account_id, AccountEvent.AUTH_FAILED, error)


def active_ids(s: Session) -> list[int]:
    return list(
        s.scalars(
            select(MailAccount.id)
            .where(MailAccount.state.in_([st.value for st in ACTIVE]))
            .order_by(MailAccount.id)
        )
    )


#: settings a running worker read at its start: a change means it must start over
CONNECTION_KEYS = (
    "imap_host",
    "imap_port",
    "imap_security",
    "username",
    "ca_file",
    "imap_disabled_caps",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_auth",
    "smtp_username",
    "folders",
    # Sync options a session reads once when it starts: a change restarts the worker.
    "mode",
    "scope",
    "auto_create_contacts",
    "auto_create_incoming",
)


def _fingerprint(a: MailAccount) -> str:
    cfg = a.settings or {}
    data = json.dumps(
        [a.email, {k: cfg.get(k) for k in CONNECTION_KEYS}], sort_keys=True, default=str
    )
    # An OAuth account's secret changes with every access-token refresh: its grant id
    # (new on each connect) stands for it, so a refresh does not restart the worker.
    grant = cfg.get("oauth_grant")
    secret = str(grant).encode() if grant else a.secret
    return hashlib.sha256(data.encode() + b"\0" + secret).hexdigest()


def active_connections(s: Session) -> dict[int, str]:
    """Accounts that should have a worker, each with a fingerprint of its connection.

    The sync service restarts a worker whose fingerprint changed: new credentials, a
    new address or server must not wait for the old session to fail on its own.
    A disabled user's accounts have none: their mail neither syncs nor goes out until
    the user is enabled again (the accounts keep their state, cursors and queue).
    """
    rows = s.scalars(
        select(MailAccount)
        .join(User, User.id == MailAccount.user_id)
        .where(
            MailAccount.state.in_([st.value for st in ACTIVE]),
            User.disabled_at.is_(None),
        )
        .order_by(MailAccount.id)
    )
    return {a.id: _fingerprint(a) for a in rows}


def active_version(s: Session) -> tuple[int, int | None]:
    """A cheap stamp of :func:`active_connections` (one aggregate, no rows loaded): it
    changes when an account starts or stops wanting a worker. Changed credentials or
    servers do not show in it: whoever changes them wakes the sync service."""
    count, top = s.execute(
        select(func.count(MailAccount.id), func.max(MailAccount.id))
        .join(User, User.id == MailAccount.user_id)
        .where(
            MailAccount.state.in_([st.value for st in ACTIVE]),
            User.disabled_at.is_(None),
        )
    ).one()
    return int(count), top


# --- options: how the account syncs (Settings → Email "Options", PATCH /api/accounts/{id}) --

#: options a user sets on the connect form, stored in MailAccount.settings
OPTION_DEFAULTS: dict[str, object] = {
    "mode": "two_way",
    "scope": "contacts",
    "auto_create_contacts": False,
    "auto_create_incoming": False,
    "archive_on_done": True,
    "folders": [],
    "large_attachments": False,
}
MODES = ("two_way", "one_way")
SCOPES = ("contacts", "crm_threads", "folders")
MAX_FOLDERS = 100


def clean_options(raw: Mapping[str, object]) -> dict[str, object]:
    """Every option, checked; a switch left out is off (as an unticked checkbox)."""
    mode = str(raw.get("mode", "two_way"))
    scope = str(raw.get("scope", "contacts"))
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    folders_raw = raw.get("folders", [])
    folders = [str(f).strip() for f in folders_raw] if isinstance(folders_raw, list) else []
    return {
        "mode": mode,
        "scope": scope,
        "auto_create_contacts": bool(raw.get("auto_create_contacts", False)),
        "auto_create_incoming": bool(raw.get("auto_create_incoming", False)),
        "archive_on_done": bool(raw.get("archive_on_done", False)),
        "folders": list(dict.fromkeys(f for f in folders if f))[:MAX_FOLDERS],
        "large_attachments": bool(raw.get("large_attachments", False)),
    }


def options_of(settings: Mapping[str, object] | None) -> dict[str, object]:
    """The account's options as they apply: stored ones over the defaults."""
    stored = settings or {}
    return clean_options({k: stored.get(k, v) for k, v in OPTION_DEFAULTS.items()})


def update_options(
    s: Session, user: UserInfo, account_id: int, changes: Mapping[str, object]
) -> dict[str, object]:
    """Change some options (owner only); the others keep their value. Returns them all."""
    a = owned(s, user, account_id)
    options = clean_options({**options_of(a.settings), **changes})
    # A new dict: SQLAlchemy's JSON column notices reassignment, not in-place changes.
    a.settings = {**(a.settings or {}), **options}
    s.flush()
    return options


# --- the owner changes the account ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """What the owner's connection form starts from (the secret stays sealed)."""

    id: int
    email: str
    settings: dict[str, object]
    secret: bytes
    state: str


def owned(s: Session, user: UserInfo, account_id: int) -> MailAccount:
    """The account, if ``user`` owns it.

    Same answers as the read routes: another workspace's account (or a teammate's, for
    a member) is "not found"; an admin sees a teammate's account but may not change it.
    """
    a = s.get(MailAccount, account_id)
    if (
        a is None
        or a.workspace_id != user.workspace_id
        or (a.user_id != user.id and not user.is_admin)
    ):
        raise NotFound(f"mail account {account_id} not found")
    if a.user_id != user.id:
        raise Forbidden("only the owner of a mail account can change it")
    return a


def connection(s: Session, user: UserInfo, account_id: int) -> Connection:
    a = owned(s, user, account_id)
    return Connection(a.id, a.email, dict(a.settings or {}), a.secret, a.state)


def _mailbox(email: str, settings: Mapping[str, object]) -> tuple[str, str]:
    host = str(settings.get("imap_host") or "").strip().lower()
    return host, str(settings.get("username") or email).strip().lower()


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    state: str
    #: another server or login: the folder cursors were reset for a fresh import
    mailbox_changed: bool


def update_connection(
    s: Session,
    user: UserInfo,
    account_id: int,
    *,
    settings: Mapping[str, object],
    secret: bytes | None = None,
    email: str | None = None,
    resume: bool = False,
) -> ConnectionChange:
    """New address, server settings and/or password, already tested by the caller.

    Nothing synced is lost: messages, timeline links and Inbox items stay. New sends
    go from the new address (the sender is read from the account at send time).

    Another server or login (host or username) is another mailbox: its UIDs mean
    nothing to our cursors, so the account's folders and placements are dropped and
    the worker imports the new mailbox afresh; the dedup keys match messages already
    stored, so nothing is stored twice. Queued flag/move changes aimed at the old
    mailbox go with them. A new password alone keeps every cursor: sync resumes
    where it stopped.

    A running, erroring or new account restarts with the new settings (event
    RECONNECT); a disconnected one stays disconnected unless ``resume``.
    """
    a = owned(s, user, account_id)
    new_email = (email or a.email).lower()
    if new_email != a.email:
        taken = s.scalar(
            select(MailAccount.id).where(
                MailAccount.user_id == a.user_id,
                MailAccount.email == new_email,
                MailAccount.id != a.id,
            )
        )
        if taken is not None:
            raise Conflict(f"{new_email} is already connected")
    merged = {**(a.settings or {}), **settings}
    changed = _mailbox(a.email, a.settings or {}) != _mailbox(new_email, merged)
    if changed:
        _reset_folders(s, a.id)
    a.email = new_email
    # A new dict: SQLAlchemy's JSON column notices reassignment, not in-place changes.
    a.settings = merged
    if secret is not None:
        a.secret = secret
    s.flush()
    if resume or a.state != AccountState.DISCONNECTED.value:
        record_event(s, a.id, AccountEvent.RECONNECT)
    s.flush()
    return ConnectionChange(a.state, changed)


def reconnect(
    s: Session,
    user: UserInfo,
    account_id: int,
    *,
    settings: Mapping[str, object],
    secret: bytes | None = None,
    email: str | None = None,
) -> ConnectionChange:
    """Resume sync (after an auth error or a disconnect), with new credentials if given."""
    return update_connection(
        s, user, account_id, settings=settings, secret=secret, email=email, resume=True
    )


def _reset_folders(s: Session, account_id: int) -> None:
    folder_ids = list(s.scalars(select(Folder.id).where(Folder.account_id == account_id)))
    if folder_ids:
        s.execute(delete(Placement).where(Placement.folder_id.in_(folder_ids)))
        s.execute(delete(Folder).where(Folder.id.in_(folder_ids)))
    s.execute(
        delete(OutboxAction).where(
            OutboxAction.account_id == account_id,
            OutboxAction.kind == "sync",
            OutboxAction.state.in_(("pending", "running", "failed")),
        )
    )


def disconnect(s: Session, user: UserInfo, account_id: int) -> None:
    """Stop syncing; all data stays, queued actions wait for a reconnect."""
    owned(s, user, account_id)
    record_event(s, account_id, AccountEvent.DISCONNECT)
    s.flush()


def push_stopped(s: Session, account_id: int, outcome: str, at: str) -> None:
    """What the provider said when a disconnect asked it to stop the account's push
    (``settings["push_stopped"]``); the Graph subscription's row goes, so a reconnect
    subscribes afresh."""
    a = s.get(MailAccount, account_id)
    if a is None:
        return
    a.settings = {**(a.settings or {}), "push_stopped": {"outcome": outcome, "at": at}}
    s.execute(delete(GraphSubscription).where(GraphSubscription.account_id == account_id))
    s.flush()


#: what a send queued through a removed mailbox says instead of waiting forever
REMOVED_SEND_ERROR = "not sent: its mailbox was removed from the CRM before it went out"


def delete_account(s: Session, user: UserInfo, account_id: int) -> None:
    """Forget the account. Never touches the mail server (the caller may stop its push:
    :mod:`crmail.sync.push_teardown`).

    - Folders, placements and the account's queued outbox actions go (FK cascade): a
      queued send is not sent later by anyone; its message is marked failed, so the
      user sees it did not go out and can send it again from another mailbox.
    - Messages stay, with their timeline links: they are CRM records now.
    - Messages that were only in this mailbox and are linked nowhere stay too
      (nothing synced is lost; the owner still finds them through their Inbox item),
      but they leave the owner's Inbox: open or snoozed items whose message has no
      INBOX copy in another of the owner's mailboxes become "archived".
    """
    a = owned(s, user, account_id)
    queued_sends = list(
        s.scalars(
            select(OutboxAction.message_id).where(
                OutboxAction.account_id == a.id,
                OutboxAction.kind == "send",
                OutboxAction.state != "done",
                OutboxAction.message_id.is_not(None),
            )
        )
    )
    for mid in queued_sends:
        if mid is None:  # pragma: no cover - filtered above
            continue
        res = s.execute(
            update(Message)
            .where(Message.id == mid, Message.send_state.in_(("queued", "sending")))
            .values(send_state="failed", send_error=REMOVED_SEND_ERROR)
        )
        if res.rowcount:  # type: ignore[attr-defined]
            notify.send_result(s, mid)
    _leave_inbox(s, a)
    # Explicit, though the foreign key cascades: the promise "a queued action of a
    # removed mailbox never runs" should not depend on PRAGMA foreign_keys.
    s.execute(delete(OutboxAction).where(OutboxAction.account_id == a.id))
    s.delete(a)
    s.flush()


def _leave_inbox(s: Session, a: MailAccount) -> None:
    here = (
        select(Placement.message_id)
        .join(Folder, Folder.id == Placement.folder_id)
        .where(Placement.account_id == a.id, Folder.role == Role.INBOX.value)
    )
    elsewhere = mail.in_user_inbox(a.user_id, Placement.message_id).where(MailAccount.id != a.id)
    items = s.scalars(
        select(InboxItem).where(
            InboxItem.user_id == a.user_id,
            InboxItem.state.in_((ItemState.OPEN.value, ItemState.SNOOZED.value)),
            InboxItem.message_id.in_(here),
            InboxItem.message_id.not_in(elsewhere),
        )
    )
    for item in items:
        item.state = ItemState.ARCHIVED.value
        item.snooze_until = None
        notify.item_updated(s, item)


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    role: str
    import_total: int
    import_done: int
    import_complete: bool
    synced: int
    skipped: dict[str, int]
    last_sync_at: datetime | None

    @property
    def progress(self) -> float:
        if self.import_complete or self.import_total == 0:
            return 1.0
        return min(1.0, self.import_done / self.import_total)


@dataclass(frozen=True, slots=True)
class AccountStatus:
    id: int
    email: str
    provider: str
    state: str
    last_error: str | None
    last_error_code: str | None
    last_sync_at: datetime | None
    folders: tuple[FolderStatus, ...]

    @property
    def skipped(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for f in self.folders:
            for reason, n in f.skipped.items():
                total[reason] = total.get(reason, 0) + n
        return total

    @property
    def synced(self) -> int:
        return sum(f.synced for f in self.folders)

    @property
    def lag_seconds(self) -> float | None:
        """How long ago the least recently checked folder was last compared with the server.

        Quiet folders are re-checked every poll interval (INBOX: every IDLE refresh), but
        a check that finds nothing is recorded at most every 5 minutes
        (:data:`crmail.sync.inbound.HEARTBEAT_EVERY`), so a healthy account shows a lag of
        at most about that; a growing lag means the worker cannot reach the server.
        """
        checked = [f.last_sync_at for f in self.folders]
        if not checked or any(c is None for c in checked):
            return None
        oldest = min(c for c in checked if c is not None)
        return max(0.0, (utcnow() - oldest).total_seconds())


def with_problem(st: AccountStatus, problem: CrmailError | None) -> AccountStatus:
    """The status as the running worker sees it: a failure it is retrying after shows even
    when the database could not record it (a lock held elsewhere, a full disk)."""
    if problem is None or AccountState(st.state) not in ACTIVE:
        return st
    return replace(
        st,
        state=AccountState.RETRYING.value,
        last_error=_reason(problem),
        last_error_code=problem.code,
    )


def _reason(error: CrmailError) -> str:
    return error.message + (f" — {error.hint}" if error.hint else "")


def status(s: Session, account_id: int) -> AccountStatus:
    a = get(s, account_id)
    folders = s.scalars(select(Folder).where(Folder.account_id == account_id).order_by(Folder.id))
    return AccountStatus(
        a.id,
        a.email,
        a.provider,
        a.state,
        a.last_error,
        a.last_error_code,
        a.last_sync_at,
        tuple(
            FolderStatus(
                f.name,
                f.role,
                f.import_total,
                f.import_done,
                f.import_complete,
                f.synced,
                dict(f.skipped or {}),
                f.last_sync_at,
            )
            for f in folders
        ),
    )
