"""The web Inbox views and thread pages show a teammate only what reading by id would.

A thread of the owner's holds a message on Ivy's timeline and a private reply from a
friend (which also started the thread, so the thread's stored subject is the private
one). A teammate and an admin viewing the owner's Inbox, or everyone's, or the thread,
see the linked message only: no subject, sender, snippet or count of the private one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from crmail.storage import crm
from crmail.storage.models import InboxItem, Message
from tests.api.conftest import Actor, World
from tests.api.test_mail_routes import T0
from tests.factories import message
from tests.web.conftest import Browser

BrowserFor = Callable[[Actor], Browser]

PRIVATE = ("zebracrossing", "Quixotic", "zed@home.test", "private-snippet")


@pytest.fixture
def thread(web: World) -> int:
    ws = web.owner.workspace_id
    web.services.db.run(lambda s: crm.create_contact(s, ws, name="Ivy", emails=["ivy@client.test"]))
    box = web.mailbox(web.owner)
    private = web.deliver(
        box,
        message(
            "Zed Quixotic <zed@home.test>",
            web.owner.email,
            "Re: zebracrossing tickets",
            "private-snippet of the reply",
            date=T0 + timedelta(hours=1),
        ),
    )
    linked = web.deliver(
        box,
        message(
            "Ivy <ivy@client.test>",
            web.owner.email,
            "Project kiwi",
            "linked snippet about kiwi",
            date=T0,
        ),
    )

    def one_thread(s: Session) -> int:
        # As a threader puts a reply with its original: the private reply's thread.
        tid = s.get_one(Message, private).thread_id
        s.execute(update(Message).where(Message.id == linked).values(thread_id=tid))
        s.execute(update(InboxItem).where(InboxItem.message_id == linked).values(thread_id=tid))
        return tid

    mate_box = web.mailbox(web.teammate)
    web.deliver(
        mate_box,
        message("shop@store.test", web.teammate.email, "Errand for mate", date=T0),
    )
    return web.services.db.run(one_thread)


def test_owner_sees_the_whole_thread(web: World, browser: BrowserFor, thread: int) -> None:
    me = browser(web.owner)
    inbox = me.get("/inbox").text
    assert "zebracrossing" in inbox and '<span class="count">2</span>' in inbox
    page = me.get(f"/threads/{thread}").text
    assert "Project kiwi" in page and "Quixotic" in page


@pytest.mark.parametrize("who", ["teammate", "admin"])
def test_teammate_views_show_only_the_linked_message(
    web: World, browser: BrowserFor, thread: int, who: str
) -> None:
    viewer = browser(getattr(web, who))
    for view in (str(web.owner.id), "all"):
        page = viewer.get(f"/inbox?view={view}")
        assert page.status_code == 200
        assert "Project kiwi" in page.text and "linked snippet about kiwi" in page.text
        assert [m for m in PRIVATE if m in page.text] == []
        # not even as a count of the thread's items
        assert '<span class="count">' not in page.text
    page = viewer.get(f"/threads/{thread}")
    assert page.status_code == 200
    assert "<h1>Project kiwi</h1>" in page.text
    assert [m for m in PRIVATE if m in page.text] == []


def test_everyones_inbox_still_has_the_viewers_own_private_mail(
    web: World, browser: BrowserFor, thread: int
) -> None:
    mine = browser(web.teammate).get("/inbox?view=all").text
    assert "Errand for mate" in mine
    assert "Errand for mate" not in browser(web.admin).get("/inbox?view=all").text
