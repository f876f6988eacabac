"""What the shells (API, CLI, web) share: settings, the database, the secret box, the sync service."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from crmail.config import Settings
from crmail.crypto import SecretBox
from crmail.errors import CrmailError, RateLimited, WrongPassword
from crmail.ratelimit import FailureLimiter
from crmail.storage import users
from crmail.storage.db import Database, translated_errors
from crmail.storage.migrate import upgrade

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crmail.storage.actions import Queued
    from crmail.storage.crm import UserInfo


class SyncControl(Protocol):
    def accounts_changed(self) -> None:
        """Tell the sync service to look at accounts again (new, reconnected, removed)."""

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        """Tell the sync service that the CRM queued changes for these accounts (and/or
        for the workspace's default sending provider)."""


class _NoSync:
    """Without a running sync service (CLI, tests), queued actions wait for the next run."""

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        pass


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    sync: SyncControl = field(default_factory=_NoSync)
    #: per account, the failure its sync worker is retrying after (the database may be
    #: unable to record it: a lock held, a full disk); the status shows it
    problems: dict[int, CrmailError] = field(default_factory=dict)
    #: wrong current passwords per user when changing it (API and web share the count)
    password_failures: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(max_failures=5, window=300.0)
    )

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Services:
        settings = settings.ensure_secret_key()
        if not settings.database_url:
            settings = replace(settings, database_url=f"sqlite:///{settings.sqlite_path}")
        if settings.database_url.startswith("sqlite:///"):
            settings.sqlite_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = Database(settings.database_url, lock_timeout=settings.db_lock_timeout)
        if migrate:
            try:
                with translated_errors(db.file):
                    upgrade(db.engine)
            except BaseException:
                db.close()
                raise
        return cls(settings, db, SecretBox(settings.secret_keys))

    async def act(self, fn: Callable[[Session], Queued]) -> Queued:
        """Run a user action in one transaction, then wake the accounts it queued work for."""
        queued = await self.db.write(fn)
        if queued.account_ids or queued.default_provider:
            self.sync.actions_queued(queued.account_ids, queued.default_provider)
        return queued

    async def change_password(
        self,
        user: UserInfo,
        current: str,
        new: str,
        *,
        keep_session: str = "",
        revoke_tokens: bool = False,
    ) -> None:
        """The user changes their password; after a few wrong current passwords the
        attempts are refused for a while, so a stolen token or session cannot be used
        to guess the password."""
        key = f"user:{user.id}"
        wait = self.password_failures.retry_after(key)
        if wait is not None:
            raise RateLimited("too many wrong current passwords", retry_after=wait)
        try:
            await self.db.write(
                lambda s: users.change_password(
                    s, user, current, new, keep_session=keep_session, revoke_tokens=revoke_tokens
                )
            )
        except WrongPassword:
            self.password_failures.failed(key)
            raise
        self.password_failures.succeeded(key)

    def user_enabled_changed(self) -> None:
        """A user was disabled or enabled: their accounts' workers stop or start, and
        the default sender looks again at the sends they queued."""
        self.sync.accounts_changed()
        self.sync.actions_queued((), default_provider=True)

    def close(self) -> None:
        self.db.close()
