"""Mail accounts: creation, life-cycle state, sync status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.domain.account import ACTIVE, AccountEvent, AccountState, IllegalTransition, transition
from crmail.errors import CrmailError, NotFound
from crmail.storage.models import Folder, MailAccount, utcnow


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
    state = transition(AccountState(a.state), event)
    a.state = state.value
    if error is not None:
        a.last_error = error.message + (f" — {error.hint}" if error.hint else "")
        a.last_error_code = error.code
    elif event in (AccountEvent.CONNECTED_IMPORTING, AccountEvent.CONNECTED_LIVE):
        a.last_error = None
        a.last_error_code = None
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


def active_ids(s: Session) -> list[int]:
    return list(
        s.scalars(
            select(MailAccount.id)
            .where(MailAccount.state.in_([st.value for st in ACTIVE]))
            .order_by(MailAccount.id)
        )
    )


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

        Quiet folders are re-checked every poll interval (INBOX: every IDLE refresh), so
        a healthy account shows a lag of at most that interval; a growing lag means the
        worker cannot reach the server.
        """
        checked = [f.last_sync_at for f in self.folders]
        if not checked or any(c is None for c in checked):
            return None
        oldest = min(c for c in checked if c is not None)
        return max(0.0, (utcnow() - oldest).total_seconds())


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
