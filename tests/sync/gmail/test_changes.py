"""Incremental sync from Gmail's history: changes made in Gmail reach the CRM, a lost
history cursor re-reads the mailbox without duplicating anything."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.storage.models import Folder, Placement, TimelineEntry
from tests.sync.gmail.conftest import Google

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


def timeline_of(google: Google, contact: int) -> list[int]:
    return sorted(
        google.services.db.run(
            lambda s: s.scalars(
                select(TimelineEntry.message_id).where(TimelineEntry.subject_id == contact)
            ).all()
        )
    )


async def test_archive_and_read_in_gmail_reach_the_crm(google: Google) -> None:
    contact = google.world.contact(CUSTOMER)
    archived = google.deliver(CUSTOMER, "Archive me")
    read = google.deliver(CUSTOMER, "Read me")
    await google.sync()
    archived_id, read_id = google.message_id_of(archived), google.message_id_of(read)
    assert archived_id is not None and read_id is not None
    assert google.item(archived_id) == ("open", False)

    google.box.modify(archived, remove=("INBOX",))  # archived in Gmail's web app
    google.box.modify(read, remove=("UNREAD",))  # read on the phone
    before = len(google.fake.requests)
    await google.sync()

    assert google.item(archived_id) != ("open", False)
    assert google.item(archived_id) is not None and google.item(archived_id)[0] != "open"  # type: ignore[index]
    assert google.placements(archived) == [("All Mail", [])]
    assert google.item(read_id) == ("open", True)
    assert google.placements(read) == [("All Mail", ["\\Seen"]), ("INBOX", ["\\Seen"])]
    assert timeline_of(google, contact) == sorted([archived_id, read_id])  # kept
    assert not any("format=raw" in r.query for r in google.fake.requests[before:])

    # Moved back to the Inbox in Gmail: back in the CRM Inbox.
    google.box.modify(archived, add=("INBOX",))
    await google.sync()
    assert google.placements(archived) == [("All Mail", []), ("INBOX", [])]
    assert google.item(archived_id) == ("open", False)


async def test_new_mail_trash_and_delete_for_good(google: Google) -> None:
    contact = google.world.contact(CUSTOMER)
    await google.sync()
    fresh = google.deliver(CUSTOMER, "Arrived after the import")
    google.deliver("stranger@else.test", "Not a contact")
    await google.sync()
    mid = google.message_id_of(fresh)
    assert mid is not None and google.item(mid) == ("open", False)
    assert google.stored() == 1

    google.box.trash(fresh)
    await google.sync()
    assert google.placements(fresh) == []
    assert google.item(mid) is not None and google.item(mid)[0] != "open"  # type: ignore[index]
    assert timeline_of(google, contact) == [mid]  # the message and its timeline stay

    google.box.untrash(fresh)
    await google.sync()
    assert google.placements(fresh) == [("All Mail", []), ("INBOX", [])]
    google.box.delete(fresh)  # deleted for good
    await google.sync()
    assert google.placements(fresh) == []
    assert google.stored() == 1 and timeline_of(google, contact) == [mid]


async def test_an_unchanged_mailbox_costs_only_history_requests(google: Google) -> None:
    google.world.contact(CUSTOMER)
    google.deliver(CUSTOMER, "Hello")
    worker = google.worker()
    await worker.run_once()
    before = len(google.fake.requests)
    await google.sync()
    asked = [r.path for r in google.fake.requests[before:]]
    assert [p for p in asked if p.endswith("/history")] == [p for p in asked if "history" in p]
    assert len([p for p in asked if p.endswith("/history")]) == 2  # before and after the drain
    assert not any(p.endswith("/messages") or "/messages/" in p for p in asked)


async def test_history_404_resyncs_without_duplicates(google: Google) -> None:
    google.world.contact(CUSTOMER)
    kept = google.deliver(CUSTOMER, "Stays")
    archived = google.deliver(CUSTOMER, "Archived while we were away")
    trashed = google.deliver(CUSTOMER, "Trashed while we were away")
    await google.sync()
    assert google.stored() == 3

    google.box.modify(archived, remove=("INBOX",))
    google.box.trash(trashed)
    new = google.deliver(CUSTOMER, "New while we were away")
    google.box.expire_history()  # our historyId is now too old: 404
    await google.sync()

    assert google.stored() == 4  # the new one; nothing twice
    assert google.placements(kept) == [("All Mail", []), ("INBOX", [])]
    assert google.placements(archived) == [("All Mail", [])]
    assert google.placements(trashed) == []
    assert google.placements(new) == [("All Mail", []), ("INBOX", [])]
    trashed_id = google.message_id_of(kept)
    assert trashed_id is not None
    per_folder = google.services.db.run(
        lambda s: s.execute(
            select(Folder.name, Placement.uid)
            .join(Folder, Folder.id == Placement.folder_id)
            .where(Placement.account_id == google.account_id)
        ).all()
    )
    assert len(per_folder) == len(set(per_folder))
    # Following resumes from the new cursor.
    later = google.deliver(CUSTOMER, "After the resync")
    await google.sync()
    assert google.stored() == 5 and google.message_id_of(later) is not None


async def test_gmail_thread_id_joins_what_crmail_would_have_split(google: Google) -> None:
    """A reply that names only a message the CRM skipped, two months after the thread
    began: crmail's own rules (links, subject within 30 days) see two threads, Gmail one."""
    from crmail.storage.models import MailAccount, Message

    def longer_window(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, google.account_id)
        a.settings = {**a.settings, "history_days": 120}

    google.services.db.run(longer_window)
    google.world.contact(CUSTOMER)
    first = google.deliver(CUSTOMER, "Contract", msgid="<a@client.test>", minutes_ago=60 * 24 * 60)
    google.deliver(
        "mum@family.test",
        "Re: Contract",
        msgid="<b@family.test>",
        in_reply_to="<a@client.test>",
        minutes_ago=60 * 24 * 45,
    )
    later = google.deliver(
        CUSTOMER, "Re: Contract", msgid="<c@client.test>", in_reply_to="<b@family.test>"
    )
    assert google.box.messages[first].thread_id == google.box.messages[later].thread_id
    await google.sync()
    assert google.stored() == 2
    threads = google.services.db.run(
        lambda s: set(
            s.scalars(
                select(Message.thread_id).where(Message.workspace_id == google.world.workspace_id)
            )
        )
    )
    assert len(threads) == 1
