"""What the shells (API, CLI, web) share: settings, the database, the secret box, the sync service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from crmail.config import Settings
from crmail.crypto import SecretBox
from crmail.storage.db import Database
from crmail.storage.migrate import upgrade


class SyncControl(Protocol):
    def accounts_changed(self) -> None:
        """Tell the sync service to look at accounts again (new, reconnected, removed)."""


class _NoSync:
    def accounts_changed(self) -> None:
        pass


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    sync: SyncControl = field(default_factory=_NoSync)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Services:
        settings = settings.ensure_secret_key()
        if settings.database_url.startswith("sqlite:///"):
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        if migrate:
            upgrade(db.engine)
        return cls(settings, db, SecretBox(settings.secret_keys))

    def close(self) -> None:
        self.db.close()
