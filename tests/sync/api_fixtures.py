"""What the Gmail and Graph sync tests share: a crmail account on a fake's mailbox, and
the looks into the database that check what its sync made true."""

from __future__ import annotations

from sqlalchemy import select

from crmail.providers.http import RetryPolicy
from crmail.services import Services
from crmail.storage import accounts
from crmail.storage.models import Folder, InboxItem, Message, Placement
from tests.factories import World

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


class SyncedAccount:
    """Looks into what an API mailbox's sync stored (mixed into the fixtures' classes)."""

    services: Services
    world: World
    user_id: int
    account_id: int

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
