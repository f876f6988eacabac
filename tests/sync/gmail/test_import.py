"""The initial import of a Gmail API account: contacts' mail only, bodies of private
mail never fetched, resumable after a crash with nothing twice, 429s waited out."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from crmail.errors import ProviderRejected
from crmail.storage.models import MailAccount, Placement, TimelineEntry
from tests.sync.gmail.conftest import Google
from tests.sync.test_inbound import wait_for

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


async def test_import_stores_contacts_mail_and_never_reads_private_bodies(google: Google) -> None:
    contact = google.world.contact(CUSTOMER)
    from_customer = google.deliver(CUSTOMER, "Quote request")
    private = google.deliver("mum@family.test", "Sunday lunch")
    archived = google.deliver(CUSTOMER, "Older thread", labels=(), minutes_ago=60)
    trashed = google.deliver(CUSTOMER, "Thrown away", labels=("TRASH",))
    sent_raw = (
        f"From: {google.address}\r\nTo: {CUSTOMER}\r\nSubject: Our offer\r\n"
        "Message-ID: <offer-1@gmail.test>\r\n\r\nHere it is.\r\n"
    ).encode()
    sent = google.box.deliver(sent_raw, labels=("SENT",)).id

    worker = await google.sync()

    assert google.stored() == 3  # customer's inbox mail, the archived one, our offer
    assert google.message_id_of(private) is None
    assert google.raw_fetches(private) == 0  # judged on metadata; its body stayed at Google
    assert google.raw_fetches(trashed) == 0 and google.message_id_of(trashed) is None
    assert worker.ingest is not None and worker.ingest.raw_fetched == 3
    assert google.placements(from_customer) == [("All Mail", []), ("INBOX", [])]
    assert google.placements(archived) == [("All Mail", ["\\Seen"])]
    assert google.placements(sent) == [("All Mail", ["\\Seen"]), ("SENT", ["\\Seen"])]
    mid = google.message_id_of(from_customer)
    assert mid is not None and google.item(mid) == ("open", False)
    archived_id = google.message_id_of(archived)
    assert archived_id is not None and google.item(archived_id) is None
    links = google.services.db.run(
        lambda s: s.scalars(
            select(TimelineEntry.message_id).where(TimelineEntry.subject_id == contact)
        ).all()
    )
    assert sorted(links) == sorted(
        i for i in (mid, archived_id, google.message_id_of(sent)) if i is not None
    )
    state = google.services.db.run(lambda s: s.get_one(MailAccount, google.account_id).state)
    assert state == "live"

    # Again: nothing new is fetched or stored.
    before = len(google.fake.requests)
    await google.sync()
    assert google.stored() == 3
    assert not any("format=raw" in r.query for r in google.fake.requests[before:])


async def test_crash_mid_import_resumes_with_nothing_twice(google: Google) -> None:
    google.world.contact(CUSTOMER)
    ids = [google.deliver(CUSTOMER, f"Order {n}", minutes_ago=10 + n) for n in range(25)]
    private = [
        google.deliver("friend@else.test", f"Chat {n}", minutes_ago=40 + n) for n in range(5)
    ]
    options = google.options
    small = google.worker(sync=type(options.sync)(batch_size=10))
    # The third page of the listing fails for good: the worker stops there, as in a crash.
    google.fake.fail(400, after=3, path_ends="/messages", method="GET")
    with pytest.raises(ProviderRejected):
        await small.run_once()
    first = google.stored()
    assert first == 20  # two pages of ten, committed with their cursor
    fetched_before = {i for i in ids if google.raw_fetches(i)}
    assert len(fetched_before) == 20

    resumed = google.worker(sync=type(options.sync)(batch_size=10))
    await resumed.run_once()
    assert google.stored() == 25
    for gid in ids:
        assert google.placements(gid) == [("All Mail", []), ("INBOX", [])]
        assert google.raw_fetches(gid) == 1  # each body fetched once, across the restart
    assert all(google.raw_fetches(p) == 0 for p in private)
    placements = google.services.db.run(
        lambda s: len(
            s.scalars(select(Placement.id).where(Placement.account_id == google.account_id)).all()
        )
    )
    assert placements == 50


async def test_a_429_storm_is_waited_out_and_the_import_completes(google: Google) -> None:
    google.world.contact(CUSTOMER)
    ids = [google.deliver(CUSTOMER, f"Note {n}", minutes_ago=n + 1) for n in range(12)]
    # More 429s in a row than one call retries: the loop backs off and tries again.
    google.fake.fail(429, times=9, reason="rateLimitExceeded")
    worker = google.worker()
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: google.stored() == 12, timeout=30)
        await wait_for(
            lambda: (
                google.services.db.run(lambda s: s.get_one(MailAccount, google.account_id).state)
                == "live"
            ),
            timeout=30,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not google.fake.faults[0].times  # every 429 was answered
    assert all(google.raw_fetches(i) >= 1 for i in ids)
