"""A Gmail label is a folder: mail filed only under a label the user did not choose is
in no synced folder, as mail in an unsynced IMAP folder (the rule: test_labels.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.storage import actions
from crmail.storage.models import MailAccount, Message, TimelineEntry
from tests.sync.gmail.conftest import Google

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


def choose_folders(google: Google, *names: str) -> None:
    def update(s):  # type: ignore[no-untyped-def]
        account = s.get_one(MailAccount, google.account_id)
        account.settings = {**account.settings, "folders": list(names)}

    google.services.db.run(update)


def on_timeline(google: Google, message_id: int, contact: int) -> bool:
    return google.services.db.run(
        lambda s: (
            s.scalar(
                select(TimelineEntry.id).where(
                    TimelineEntry.message_id == message_id, TimelineEntry.subject_id == contact
                )
            )
            is not None
        )
    )


async def test_a_contacts_mail_under_a_label_not_chosen_stays_out_unread(google: Google) -> None:
    google.world.contact(CUSTOMER)
    projects = google.box.create_label("Projects")["id"]
    personal = google.box.create_label("Personal")["id"]
    choose_folders(google, "Projects")
    filed = google.deliver(CUSTOMER, "Filtered away", labels=(personal, "UNREAD"))
    chosen = google.deliver(CUSTOMER, "Filed in Projects", labels=(projects, "UNREAD"))
    await google.sync()  # the import
    later = google.deliver(CUSTOMER, "Filtered again", labels=(personal, "UNREAD"))
    await google.sync()  # history

    assert google.message_id_of(filed) is None and google.message_id_of(later) is None
    assert google.raw_fetches(filed) == google.raw_fetches(later) == 0  # bodies stay at Google
    assert google.placements(chosen) == [("All Mail", []), ("Projects", [])]
    assert google.stored() == 1


async def test_done_on_mail_a_filter_also_labelled_keeps_it_on_the_timeline(
    google: Google,
) -> None:
    contact = google.world.contact(CUSTOMER)
    personal = google.box.create_label("Personal")["id"]
    gid = google.deliver(CUSTOMER, "Hello", labels=("INBOX", "UNREAD", personal))
    await google.sync()
    mid = google.message_id_of(gid)
    assert mid is not None
    assert google.placements(gid) == [("All Mail", []), ("INBOX", [])]

    u = google.user()
    thread = google.services.db.run(lambda s: s.get_one(Message, mid).thread_id)
    await google.services.act(lambda s: actions.done(s, u, thread))
    await google.sync()
    await google.sync()

    # Archived with its label: it is now only "in Personal", a folder not synced.
    assert google.box.messages[gid].labels == {personal}
    assert google.placements(gid) == []
    item = google.item(mid)
    assert item is not None and item[0] != "open"
    assert on_timeline(google, mid, contact)

    # The label removed elsewhere (a move to the archive): placed again, still done,
    # nothing stored twice, nothing fetched again.
    google.box.modify(gid, remove=(personal,))
    await google.sync()
    assert google.placements(gid) == [("All Mail", ["\\Seen"])]
    assert google.item(mid) == item
    assert google.stored() == 1
    assert google.raw_fetches(gid) == 1
