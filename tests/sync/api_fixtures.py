"""What the Gmail and Graph sync tests share: a crmail account on a fake's mailbox, and
the looks into the database that check what its sync made true."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import select

from crmail.providers.http import RetryPolicy
from crmail.services import Services
from crmail.storage import accounts
from crmail.storage.models import Folder, InboxItem, Message, Placement
from crmail.sync.worker import AccountWorker, WorkerOptions
from tests.factories import World

W = TypeVar("W", bound=AccountWorker)

#: retries that do not wait long: tests count requests, they never time them
QUICK_RETRY = RetryPolicy(throttled_attempts=3, server_attempts=2, base_delay=0.01, jitter=0.0)


def connect_api_account(
    services: Services, world: World, user_id: int, address: str, token: str, provider: str
) -> int:
    """An account of ``provider`` ("gmail", "graph") whose OAuth token is ``token``."""
    secret = services.box.seal({"oauth2_token": token})
    return services.db.run(
        lambda s: accounts.create_account(
            s,
            workspace_id=world.workspace_id,
            user_id=user_id,
            email=address,
            provider=provider,
            settings={"history_days": 30},
            secret=secret,
        )
    )


class SyncedAccount(Generic[W]):
    """An API mailbox's worker, and looks into what its sync stored (mixed into the
    fixtures' classes)."""

    worker_class: ClassVar[type[AccountWorker]]
    services: Services
    world: World
    box: Any
    user_id: int
    account_id: int
    options: WorkerOptions

    @property
    def address(self) -> str:
        return str(self.box.address)

    def worker(self, **changes: object) -> W:
        options = replace(self.options, **changes) if changes else self.options  # type: ignore[arg-type]
        made = self.worker_class(self.services.db, self.services.box, self.account_id, options)
        return made  # type: ignore[return-value]

    async def sync(self) -> W:
        worker = self.worker()
        await worker.run_once()
        return worker

    def placements(self, remote_id: str) -> list[tuple[str, list[str]]]:
        return sorted(
            self.services.db.run(
                lambda s: [
                    (name, list(flags))
                    for name, flags in s.execute(
                        select(Folder.name, Placement.flags)
                        .join(Folder, Folder.id == Placement.folder_id)
                        .where(
                            Placement.account_id == self.account_id,
                            Placement.remote_id == remote_id,
                        )
                    ).all()
                ]
            )
        )

    def message_id_of(self, remote_id: str) -> int | None:
        return self.services.db.run(
            lambda s: s.scalar(
                select(Placement.message_id).where(
                    Placement.account_id == self.account_id, Placement.remote_id == remote_id
                )
            )
        )

    def item(self, message_id: int) -> tuple[str, bool] | None:
        row = self.services.db.run(
            lambda s: s.execute(
                select(InboxItem.state, InboxItem.is_read).where(
                    InboxItem.user_id == self.user_id, InboxItem.message_id == message_id
                )
            ).one_or_none()
        )
        return None if row is None else (row[0], row[1])

    def stored(self) -> int:
        return self.services.db.run(
            lambda s: len(
                s.scalars(
                    select(Message.id).where(Message.workspace_id == self.world.workspace_id)
                ).all()
            )
        )
