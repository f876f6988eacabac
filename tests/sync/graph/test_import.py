"""The import of a Microsoft Graph account: contacts' mail only, private MIME never
fetched, resumable after a crash with nothing twice, 410 → full resync, nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crmail.errors import ProviderRejected
from crmail.providers.graph import GraphClient
from crmail.storage.models import MailAccount, TimelineEntry
from tests.sync.graph.conftest import Outlook

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


async def test_import_stores_contacts_mail_and_never_reads_private_mime(
    outlook: Outlook,
) -> None:
    contact = outlook.world.contact(CUSTOMER)
    from_customer = outlook.deliver(CUSTOMER, "Quote request")
    private = outlook.deliver("mum@family.test", "Sunday lunch")
    archived = outlook.deliver(CUSTOMER, "Older thread", folder="archive", minutes_ago=60)
    too_old = outlook.deliver(CUSTOMER, "Ancient", minutes_ago=60 * 24 * 40)

    worker = await outlook.sync()

    assert outlook.stored() == 2
    assert outlook.message_id_of(private) is None
    assert outlook.mime_fetches(private) == 0  # judged on metadata; its body stayed put
    assert outlook.mime_fetches(too_old) == 0 and outlook.message_id_of(too_old) is None
    assert worker.ingest is not None and worker.ingest.raw_fetched == 2
    assert outlook.placements(from_customer) == [("Inbox", [])]
    assert outlook.placements(archived) == [("Archive", [])]
    mid = outlook.message_id_of(from_customer)
    assert mid is not None and outlook.item(mid) == ("open", False)
    archived_id = outlook.message_id_of(archived)
    assert archived_id is not None and outlook.item(archived_id) is None
    links = outlook.services.db.run(
        lambda s: s.scalars(
            select(TimelineEntry.message_id).where(TimelineEntry.subject_id == contact)
        ).all()
    )
    assert sorted(links) == sorted([mid, archived_id])
    state = outlook.services.db.run(lambda s: s.get_one(MailAccount, outlook.account_id).state)
    assert state == "live"
    # Every request asked for immutable ids.
    assert all("immutableid" in r.prefer.lower() for r in outlook.fake.requests[-5:])

    before = len(outlook.fake.requests)
    await outlook.sync()
    assert outlook.stored() == 2
    assert not any(r.path.endswith("/$value") for r in outlook.fake.requests[before:])


async def test_crash_mid_import_resumes_with_nothing_twice(
    outlook: Outlook, monkeypatch: pytest.MonkeyPatch
) -> None:
    outlook.world.contact(CUSTOMER)
    ids = [outlook.deliver(CUSTOMER, f"Order {n}", minutes_ago=10 + n) for n in range(25)]
    real = GraphClient.messages_delta_page
    calls = {"n": 0}

    async def crashing(self: GraphClient, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # the Inbox's third page: as if the process died here
            raise ProviderRejected("crash")
        return await real(self, *args, **kw)

    monkeypatch.setattr(GraphClient, "messages_delta_page", crashing)
    with pytest.raises(ProviderRejected):
        await outlook.worker().run_once()
    assert outlook.stored() == 20  # two pages of ten, committed with their next link
    monkeypatch.setattr(GraphClient, "messages_delta_page", real)

    worker = await outlook.sync()

    assert outlook.stored() == 25
    assert worker.ingest is not None and worker.ingest.raw_fetched == 5
    assert all(outlook.mime_fetches(i) == 1 for i in ids)


async def test_expired_delta_link_resyncs_in_full_with_nothing_twice(outlook: Outlook) -> None:
    outlook.world.contact(CUSTOMER)
    kept = outlook.deliver(CUSTOMER, "Kept")
    moved = outlook.deliver(CUSTOMER, "Moved while forgotten")
    await outlook.sync()
    assert outlook.stored() == 2

    outlook.box.expire_delta(410)
    outlook.box.move(moved, "junkemail")  # unseen by any delta: the resync must notice
    late = outlook.deliver(CUSTOMER, "After the reset", minutes_ago=1)
    await outlook.sync()

    assert outlook.stored() == 3
    assert outlook.placements(kept) == [("Inbox", [])]
    assert outlook.placements(late) == [("Inbox", [])]
    assert outlook.placements(moved) == []  # out of the synced folders...
    assert outlook.message_id_of(kept) is not None
    assert outlook.mime_fetches(kept) == 1  # ...and nothing fetched or stored twice
