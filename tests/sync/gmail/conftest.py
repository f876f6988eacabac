"""A Google account synced through the Gmail API against the fake Gmail on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from crmail.services import Services
from crmail.storage import crm
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.worker import WorkerOptions
from tests.factories import World, message, new_world
from tests.fakes.gmail import FakeGmail, Mailbox
from tests.fakes.server import LoopbackServer
from tests.sync.api_fixtures import QUICK_RETRY, SyncedAccount, connect_api_account
from tests.sync.test_inbound import FAST

pytestmark = pytest.mark.db

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def gmail_fake() -> Iterator[tuple[FakeGmail, str]]:
    fake = FakeGmail(seed=11)
    with LoopbackServer(fake.app) as server:
        yield fake, server.url


@dataclass
class Google(SyncedAccount[GmailWorker]):
    """One user's Gmail mailbox on the fake and their crmail account syncing it."""

    worker_class = GmailWorker

    services: Services
    world: World
    fake: FakeGmail
    url: str
    box: Mailbox
    user_id: int
    account_id: int
    options: WorkerOptions

    def user(self) -> crm.UserInfo:
        return self.services.db.run(
            lambda s: crm.get_user(s, self.world.workspace_id, self.user_id)
        )

    def deliver(
        self,
        sender: str,
        subject: str = "Hello",
        *,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        minutes_ago: int = 5,
        **kw: object,
    ) -> str:
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        raw = message(sender, self.address, subject, date=when, **kw)  # type: ignore[arg-type]
        return self.box.deliver(raw, labels=labels, internal_date=when).id

    def raw_fetches(self, gmail_id: str) -> int:
        """Requests that asked Gmail for this message's body."""
        return sum(
            1
            for r in self.fake.requests
            if r.path.endswith(f"/messages/{gmail_id}") and "format=raw" in r.query
        )


def gmail_options(url: str, **changes: object) -> WorkerOptions:
    return replace(
        FAST,
        gmail=GmailOptions(base_url=url, retry=QUICK_RETRY),
        min_backoff=0.05,
        max_backoff=0.2,
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def google(services: Services, gmail_fake: tuple[FakeGmail, str]) -> Google:
    fake, url = gmail_fake
    fake.faults.clear()
    fake.push_url = None
    fake.pubsub.audience = None
    n = next(_numbers)
    address = f"pat{n}@gmail.test"
    token = f"gmail-token-{n}"
    box = fake.add_mailbox(address, token=token)
    world = new_world(services)
    me = world.user(address)
    account_id = connect_api_account(services, world, me, address, token, "gmail")
    return Google(services, world, fake, url, box, me, account_id, gmail_options(url))
