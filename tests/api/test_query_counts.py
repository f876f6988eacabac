"""Each API route and web page issues a bounded number of SQL statements.

The same request is made against a small and a bigger seeded workspace (a thread of 2
vs 8 messages, an Inbox page of 5 vs 25 items, a timeline of 5 vs 25): the count must
not grow with the number of messages. Counted with SQLAlchemy's ``before_cursor_execute``
event on the app's engine, so every statement the request runs is seen (deterministic,
no timing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from crmail.storage import auth_cache, crm
from crmail.storage.models import InboxItem, Message
from tests.api.conftest import Actor, World
from tests.api.test_mail_routes import T0
from tests.factories import message
from tests.web.conftest import Browser, browser, web  # noqa: F401

pytestmark = pytest.mark.db

BrowserFor = Callable[[Actor], Browser]


@contextmanager
def counting(w: World) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = w.services.db.engine
    # Counted with the token checked afresh: what a request costs at worst.
    auth_cache.invalidate()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _seed(w: World, n: int) -> tuple[int, int, list[int]]:
    """``n`` messages from a contact to the owner, in one thread: (contact, thread, ids)."""
    ws = w.owner.workspace_id
    contact = w.services.db.run(
        lambda s: crm.create_contact(s, ws, name="Ivy", emails=["ivy@client.test"])
    ).id
    box = w.mailbox(w.owner)
    ids = [
        w.deliver(
            box,
            message(
                "Ivy <ivy@client.test>",
                w.owner.email,
                f"Project kiwi {i}",
                f"body {i}",
                date=T0 + timedelta(minutes=i),
            ),
        )
        for i in range(n)
    ]

    def one_thread(s: Session) -> int:
        tid = s.get_one(Message, ids[0]).thread_id
        s.execute(update(Message).where(Message.id.in_(ids)).values(thread_id=tid))
        s.execute(update(InboxItem).where(InboxItem.message_id.in_(ids)).values(thread_id=tid))
        return tid

    return contact, w.services.db.run(one_thread), ids


def _api_counts(w: World, contact: int, last: int) -> dict[str, int]:
    urls = {
        "inbox": (w.owner, "/api/inbox?limit=100"),
        "teammate inbox": (w.teammate, f"/api/inbox?user_id={w.owner.id}&limit=100"),
        "message": (w.owner, f"/api/messages/{last}"),
        "timeline": (w.owner, f"/api/contacts/{contact}/timeline?limit=100"),
        "contacts": (w.owner, "/api/contacts"),
        "deals": (w.owner, "/api/deals"),
    }
    out = {}
    for name, (actor, url) in urls.items():
        with counting(w) as statements:
            resp = w.client.get(url, headers=actor.headers)
        assert resp.status_code == 200, (name, resp.text)
        out[name] = len(statements)
    return out


def test_api_routes_issue_as_many_statements_for_many_messages_as_for_few(world: World) -> None:
    contact, _thread, ids = _seed(world, 5)
    _api_counts(world, contact, ids[-1])  # first uses of a token record it: not counted
    few = _api_counts(world, contact, ids[-1])
    _contact, more_ids = _seed_more(world, 20)
    more = _api_counts(world, contact, more_ids[-1])
    page = world.client.get("/api/inbox?limit=100", headers=world.owner.headers).json()
    assert len(page["items"]) == 25
    assert more == few, f"statement counts grew with the messages: {few} -> {more}"
    # A message read loads its row once, with the rule in the same query.
    with counting(world) as statements:
        world.client.get(f"/api/messages/{ids[0]}", headers=world.owner.headers)
    assert sum("FROM messages" in s for s in statements) == 1, statements


def _seed_more(w: World, extra: int) -> tuple[int, list[int]]:
    ws = w.owner.workspace_id
    contact = w.services.db.run(lambda s: crm.list_contacts(s, ws, email="ivy@client.test")[0].id)
    box_id = w.services.db.run(lambda s: crm.find_account(s, w.owner.id, w.owner.email))
    assert box_id is not None
    tid = w.services.db.run(
        lambda s: s.scalar(
            Message.__table__.select()
            .with_only_columns(Message.thread_id)
            .where(Message.workspace_id == ws)
            .limit(1)
        )
    )
    from tests.api.conftest import Mailbox

    def folders(s: Session) -> Mailbox:
        from crmail.storage.models import Folder

        by_name = {
            f.name: f.id
            for f in s.query(Folder).filter(Folder.account_id == box_id).all()  # noqa: RUF100
        }
        return Mailbox(box_id, by_name["INBOX"], by_name["Sent"], iter(range(10_000, 20_000)))

    box = w.services.db.run(folders)
    ids = [
        w.deliver(
            box,
            message(
                "Ivy <ivy@client.test>",
                w.owner.email,
                f"Project kiwi more {i}",
                f"more body {i}",
                date=T0 + timedelta(hours=1, minutes=i),
            ),
        )
        for i in range(extra)
    ]

    def join(s: Session) -> None:
        s.execute(update(Message).where(Message.id.in_(ids)).values(thread_id=tid))
        s.execute(update(InboxItem).where(InboxItem.message_id.in_(ids)).values(thread_id=tid))

    w.services.db.run(join)
    return contact, ids


def _web_counts(w: World, b: Browser, thread: int, contact: int) -> dict[str, int]:
    pages = {
        "inbox": "/inbox",
        "all users": "/inbox?view=all",
        "thread": f"/threads/{thread}",
        "contact": f"/contacts/{contact}",
    }
    out = {}
    for name, url in pages.items():
        with counting(w) as statements:
            resp = b.get(url)
        assert resp.status_code == 200, (name, resp.text[:500])
        out[name] = len(statements)
    return out


def test_web_pages_issue_as_many_statements_for_a_long_thread_as_for_a_short_one(
    web: World,  # noqa: F811
    browser: BrowserFor,  # noqa: F811
) -> None:
    b = browser(web.owner)
    contact, thread, _ids = _seed(web, 2)
    _web_counts(web, b, thread, contact)  # warm-up, as for the API
    few = _web_counts(web, b, thread, contact)
    _seed_more(web, 6)
    more = _web_counts(web, b, thread, contact)
    html = b.get(f"/threads/{thread}").text
    assert html.count("<article") == 8
    assert more == few, f"statement counts grew with the messages: {few} -> {more}"
    # Small as well as flat: the thread page was 70 statements for 4 messages.
    assert more["thread"] <= 25, more
