"""The Gmail placement rule: a label is a folder (pure, no server)."""

from __future__ import annotations

import pytest

from crmail.sync.gmail.labels import ALL_MAIL, placed_under

PROJECTS, PERSONAL = "Label_1", "Label_2"
CHOSEN = {PROJECTS}


@pytest.mark.parametrize(
    ("labels", "placed"),
    [
        # in the Inbox, whatever else it carries
        ({"INBOX", "UNREAD"}, ["INBOX", ALL_MAIL]),
        ({"INBOX", PERSONAL}, ["INBOX", ALL_MAIL]),
        ({"INBOX", PROJECTS}, ["INBOX", PROJECTS, ALL_MAIL]),
        # archived without a user label: the archive
        (set(), [ALL_MAIL]),
        ({"IMPORTANT", "CATEGORY_UPDATES", "STARRED"}, [ALL_MAIL]),
        # archived under a chosen label: that folder (and All Mail, which holds it)
        ({PROJECTS}, [PROJECTS, ALL_MAIL]),
        ({PROJECTS, PERSONAL}, [PROJECTS, ALL_MAIL]),
        # filed only under a label not chosen: in no synced folder, as an unsynced folder
        ({PERSONAL}, []),
        ({PERSONAL, "UNREAD", "IMPORTANT"}, []),
        # Sent is a folder of its own
        ({"SENT"}, ["SENT", ALL_MAIL]),
        ({"SENT", PERSONAL}, ["SENT", ALL_MAIL]),
        # Trash, Spam and drafts are in none
        ({"INBOX", "TRASH"}, []),
        ({"SPAM", PROJECTS}, []),
        ({"DRAFT"}, []),
    ],
)
def test_a_label_is_a_folder(labels: set[str], placed: list[str]) -> None:
    assert placed_under(labels, CHOSEN) == placed


def test_a_label_change_elsewhere_is_a_move() -> None:
    # Done in the CRM on mail a filter also labelled: it goes where Personal is, off
    # every synced folder; labelled Projects later, it comes back into one.
    before = placed_under({"INBOX", PERSONAL}, CHOSEN)
    after_done = placed_under({PERSONAL}, CHOSEN)
    assert "INBOX" in before and after_done == []
    assert placed_under({PERSONAL, PROJECTS}, CHOSEN) == [PROJECTS, ALL_MAIL]
    # the label removed elsewhere: archived plain, back in the archive
    assert placed_under(set(), CHOSEN) == [ALL_MAIL]
