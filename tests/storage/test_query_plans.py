"""Every list is served in the order of an index: no sort of the whole list, no table scan.

Each list read (own, teammate's and everyone's Inbox, timelines, a thread, contacts,
leads, deals; first page and a deep page) is run on a seeded workspace while its SQL
is captured; the statement that reads the list (the one with ORDER BY ... LIMIT) is
then explained with the same parameters. SQLite: ``EXPLAIN QUERY PLAN`` must have no
``USE TEMP B-TREE FOR ORDER BY`` and no ``SCAN`` of a table without an index.
PostgreSQL (``enable_seqscan = off`` and ``enable_sort = off`` so the tiny tables do
not make a sequential scan or a sort of a few rows the cheapest plan; a Sort still shows
where no index gives the order): no ``Sort`` node, no ``Seq Scan`` and no hashed SubPlan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from crmail.services import Services
from crmail.storage import crm, item_sharing, visibility
from crmail.storage import web as web_store
from crmail.storage.bulk import insert_rows
from crmail.storage.models import (
    Contact,
    Deal,
    InboxItem,
    Lead,
    Message,
    Thread,
    TimelineEntry,
    User,
    Workspace,
)

pytestmark = pytest.mark.db

T0 = datetime(2025, 1, 1, tzinfo=UTC)
N = 120


@contextmanager
def captured(services: Services) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        seen.append((statement, parameters))

    event.listen(services.db.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(services.db.engine, "before_cursor_execute", grab)


@pytest.fixture
def seeded(services: Services) -> dict[str, int]:
    def make(s: Session) -> dict[str, int]:
        ws = Workspace(name="Acme")
        s.add(ws)
        s.flush()
        me = User(workspace_id=ws.id, email="me@acme.test", name="Me")
        mate = User(workspace_id=ws.id, email="mate@acme.test", name="Mate")
        s.add_all([me, mate])
        lead = Lead(workspace_id=ws.id, name="Client Inc")
        s.add(lead)
        s.flush()
        contact = Contact(workspace_id=ws.id, name="Ivy", lead_id=lead.id)
        s.add(contact)
        s.add_all(Contact(workspace_id=ws.id, name=f"c{i}") for i in range(N))
        deal = Deal(workspace_id=ws.id, title="Big one", lead_id=lead.id)
        s.add(deal)
        s.add_all(Deal(workspace_id=ws.id, title=f"d{i}", status="won") for i in range(N))
        s.add_all(Lead(workspace_id=ws.id, name=f"l{i}") for i in range(N))
        thread = Thread(workspace_id=ws.id, subject="kiwi")
        s.add(thread)
        s.flush()
        for i in range(N):
            when = T0 + timedelta(minutes=i)
            m = Message(
                workspace_id=ws.id,
                thread_id=thread.id,
                dedup_key=f"k{i}",
                subject="kiwi",
                sent_at=when if i % 2 else None,
                received_at=when,
            )
            s.add(m)
            s.flush()
            for kind, ident in (("contact", contact.id), ("lead", lead.id), ("deal", deal.id)):
                s.add(
                    TimelineEntry(
                        workspace_id=ws.id,
                        message_id=m.id,
                        subject_type=kind,
                        subject_id=ident,
                        reason="from Ivy",
                    )
                )
            for uid in (me.id, mate.id):
                state = ("open", "snoozed", "done")[i % 3]
                s.add(
                    InboxItem(
                        workspace_id=ws.id,
                        user_id=uid,
                        message_id=m.id,
                        thread_id=thread.id,
                        state=state,
                        snooze_until=T0 if state == "snoozed" else None,
                        received_at=when,
                    )
                )
        s.flush()
        item_sharing.refresh(s, s.scalars(select(Message.id)))
        return {
            "me": me.id,
            "mate": mate.id,
            "lead": lead.id,
            "contact": contact.id,
            "deal": deal.id,
            "thread": thread.id,
        }

    return services.db.run(make)


def _lists(ids: dict[str, int]) -> dict[str, Callable[[Session, crm.UserInfo, str | None], Any]]:
    """Each list read, taking a cursor (None: first page) and giving the next cursor."""

    def timeline(kind: str) -> Callable[[Session, crm.UserInfo, str | None], Any]:
        return lambda s, me, c: crm.timeline(s, me, kind, ids[kind], 10, c).next_before

    def last_id(rows: list[Any]) -> str:
        return str(rows[-1].id)

    return {
        "own inbox": lambda s, me, c: crm.inbox_for(s, me, me.id, 10, c).next_before,
        "teammate inbox": lambda s, me, c: crm.inbox_for(s, me, ids["mate"], 10, c).next_before,
        "unread inbox": lambda s, me, c: crm.inbox_for(s, me, me.id, 10, c, False).next_before,
        "contact timeline": timeline("contact"),
        "lead timeline": timeline("lead"),
        "deal timeline": timeline("deal"),
        "contacts": lambda s, me, c: last_id(
            crm.list_contacts(s, me.workspace_id, limit=10, after=int(c) if c else None)
        ),
        "contacts of a lead": lambda s, me, c: last_id(
            crm.list_contacts(s, me.workspace_id, lead_id=ids["lead"], limit=10)
        ),
        "leads": lambda s, me, c: last_id(
            crm.list_leads(s, me.workspace_id, limit=10, after=int(c) if c else None)
        ),
        "deals": lambda s, me, c: last_id(
            crm.list_deals(s, me.workspace_id, limit=10, after=int(c) if c else None)
        ),
        "won deals": lambda s, me, c: last_id(
            crm.list_deals(s, me.workspace_id, status="won", limit=10, after=int(c) if c else None)
        ),
        "thread": lambda s, me, c: str(len(visibility.thread_messages(s, me, ids["thread"]))),
    }


def _list_statements(seen: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    # The list itself is the ordered, LIMITed read (a thread has no limit: its ORDER BY
    # is the message date); the lookups by the page's ids that follow are bounded by the
    # page size whatever their plan. The Inbox's due snoozed items are found by time.
    return [
        (sql, p)
        for sql, p in seen
        if ("ORDER BY" in sql and ("LIMIT" in sql or "coalesce(" in sql))
        or "snooze_until <=" in sql
    ]


def _plan(s: Session, sql: str, params: Any) -> list[str]:
    cursor = s.connection().connection.cursor()
    try:
        if s.get_bind().dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return [str(row[-1]) for row in cursor.fetchall()]
        cursor.execute("SET LOCAL enable_seqscan = off")
        # Nor sorting a handful of rows: where an index gives the order, it must be used.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + sql, params)
        return [str(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _problems(dialect: str, plan: list[str], sql: str) -> list[str]:
    if "snooze_until <=" in sql:
        # Due snoozed items are found by time on their index (few: the waker reopens
        # them); walking every snoozed item of the user to find them is the fault.
        if dialect == "sqlite":
            ok = any("snooze_until<?" in line for line in plan)
        else:
            ok = any("Index Cond" in line and "snooze_until <=" in line for line in plan)
        return [] if ok else [f"due snoozed items not found by their time: {plan}"]
    if dialect == "sqlite":
        return [
            line
            for line in plan
            if "TEMP B-TREE" in line
            or (line.startswith("SCAN ") and "INDEX" not in line and "CONSTANT" not in line)
        ]
    # A hashed SubPlan reads its whole table per statement (the visibility rule's EXISTS
    # over every timeline entry), whatever the page's LIMIT.
    return [
        line for line in plan if "Sort" in line or "Seq Scan" in line or "hashed SubPlan" in line
    ]


#: the lists paged by a cursor: a deep page must start its index read at the cursor
KEYSET = (
    "own inbox",
    "teammate inbox",
    "unread inbox",
    "contact timeline",
    "lead timeline",
    "deal timeline",
    "contacts",
    "leads",
    "deals",
    "won deals",
)


def _seeks(dialect: str, plan: list[str]) -> bool:
    """The list's index read starts at the cursor (a range in the seek), rather than at
    the top of the list with the rows before the cursor read and dropped."""
    if dialect == "sqlite":
        return any(line.startswith("SEARCH") and ("<?" in line or ">?" in line) for line in plan)
    return any("Index Cond" in line and ("<" in line or ">" in line) for line in plan)


@pytest.mark.parametrize("name", list(_lists({k: 0 for k in ("lead", "contact", "deal")})))
@pytest.mark.parametrize("page", ["first", "deep"])
def test_each_list_is_read_in_index_order(
    services: Services, seeded: dict[str, int], name: str, page: str
) -> None:
    read = _lists(seeded)[name]

    def run(s: Session) -> list[str]:
        me = web_store.user_by_id(s, seeded["me"])
        cursor = None
        if page == "deep":
            for _ in range(3):
                cursor = read(s, me, cursor)
                assert cursor, "the seeded list has more than three pages"
        with captured(services) as seen:
            read(s, me, cursor)
        statements = _list_statements(seen)
        assert statements, "the list read issued no ordered query"
        dialect = s.get_bind().dialect.name
        bad = []
        for sql, params in statements:
            plan = _plan(s, sql, params)
            bad += [f"{line}\n  in {sql}\n  plan: {plan}" for line in _problems(dialect, plan, sql)]
            seek_needed = cursor is not None and name in KEYSET and "ORDER BY" in sql
            if seek_needed and not _seeks(dialect, plan):
                bad.append(f"the index is not entered at the cursor: {plan}\n  in {sql}")
        return bad

    assert services.db.run(run) == []


def test_a_reply_finds_its_thread_by_subject_through_the_subject_index(
    services: Services, seeded: dict[str, int]
) -> None:
    """The import's lookup by subject (one statement for a batch's replies) seeks the
    candidates (workspace, subject, date); read in id order through the workspace index
    instead, it walked every thread of the workspace per imported reply."""
    from crmail.storage.thread_lookup import threads_by_subject

    def run(s: Session) -> list[str]:
        ws = s.get_one(User, seeded["me"]).workspace_id
        with captured(services) as seen:
            threads_by_subject(s, ws, [("project kiwi 7", T0), ("project kiwi 8", T0)])
        [(sql, params)] = [(q, p) for q, p in seen if "subject_key" in q]
        plan = _plan(s, sql, params)
        if s.get_bind().dialect.name == "sqlite":
            ok = any("ix_threads_ws_subject" in line and "subject_key=?" in line for line in plan)
        else:
            ok = any("ix_threads_ws_subject" in line for line in plan)
        return [] if ok else [f"threads not sought by subject: {plan}"]

    assert services.db.run(run) == []


def test_a_teammates_inbox_reads_only_items_others_may_see(
    services: Services, seeded: dict[str, int]
) -> None:
    """The teammate's page is a range of (user, shared, state, received_at, id): the
    owner's private items are not in it, so none is read and dropped to fill a page."""

    def hide(s: Session) -> None:
        # The mate's newest mail is private, and most of it: a first page read in plain
        # date order would walk all of it. PostgreSQL plans by statistics, so it gets them.
        mate = s.get_one(User, seeded["mate"])
        thread = Thread(workspace_id=mate.workspace_id, subject="own")
        s.add(thread)
        s.flush()
        for i in range(400):
            m = Message(
                workspace_id=mate.workspace_id,
                thread_id=thread.id,
                dedup_key=f"own{i}",
                received_at=T0 + timedelta(days=1, minutes=i),
            )
            s.add(m)
            s.flush()
            s.add(
                InboxItem(
                    workspace_id=mate.workspace_id,
                    user_id=mate.id,
                    message_id=m.id,
                    thread_id=thread.id,
                    received_at=m.received_at,
                )
            )
        s.flush()
        item_sharing.refresh(s, s.scalars(select(Message.id)))

    services.db.run(hide)
    if services.db.engine.dialect.name == "postgresql":
        with services.db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()

    def run(s: Session) -> list[str]:
        me = web_store.user_by_id(s, seeded["me"])
        with captured(services) as seen:
            page = crm.inbox_for(s, me, seeded["mate"], 10)
        assert all(e.message.subject == "kiwi" for e in page.items)
        [(sql, params)] = [(q, p) for q, p in _list_statements(seen) if "ORDER BY" in q]
        plan = _plan(s, sql, params)
        if s.get_bind().dialect.name == "sqlite":
            ok = any("ix_inbox_user_shared_state" in line and "shared=?" in line for line in plan)
        else:
            ok = any("Index Cond" in line and "shared" in line for line in plan)
        return [] if ok else [f"not a range of the owner's shared items: {plan}"]

    assert services.db.run(run) == []


def test_messages_are_found_by_message_id_through_the_dedup_key_index(
    services: Services, seeded: dict[str, int]
) -> None:
    """Threading's lookup by Message-ID (one statement per batch) seeks the key range
    the Message-ID's digest starts in the unique (workspace, dedup key) index: there is
    no index keyed by Message-ID, and walking the workspace per lookup is the fault."""
    from crmail.domain.identity import dedup_key
    from crmail.storage.thread_lookup import threads_by_message_id

    def run(s: Session) -> tuple[dict[str, int], list[str]]:
        ws = s.get_one(User, seeded["me"]).workspace_id
        threads = [Thread(workspace_id=ws, subject=f"t{i}") for i in range(3)]
        s.add_all(threads)
        s.flush()
        for thread, mid, sender in (
            (threads[0], "a@client.test", "ivy@client.test"),
            # another sender's message under the same Message-ID: a second key in range
            (threads[1], "a@client.test", "spoof@else.test"),
            (threads[2], "b@client.test", "ivy@client.test"),
        ):
            key = dedup_key(mid, sender, date=None, subject="", recipients=())
            s.add(Message(workspace_id=ws, thread_id=thread.id, dedup_key=key, message_id=mid))
        # A workspace with some mail, its statistics known: planners choose by them, and
        # for a handful of rows any index will do.
        more = [f"m{i}@client.test" for i in range(3_000)]
        insert_rows(
            s,
            Message,
            [
                {
                    "workspace_id": ws,
                    "thread_id": threads[0].id,
                    "dedup_key": dedup_key(
                        mid, "ivy@client.test", date=None, subject="", recipients=()
                    ),
                    "message_id": mid,
                }
                for mid in more
            ],
        )
        s.flush()
        s.execute(text("ANALYZE messages"))
        with captured(services) as seen:
            found = threads_by_message_id(s, ws, ["b@client.test", "a@client.test", "none@x"])
        [(sql, params)] = [(q, p) for q, p in seen if "thread_id" in q]
        plan = _plan(s, sql, params)
        assert found["b@client.test"] == threads[2].id
        assert found["a@client.test"] in {threads[0].id, threads[1].id}
        assert "none@x" not in found and len(found) == 2
        if s.get_bind().dialect.name == "sqlite":
            ok = any(
                line.startswith("SEARCH m USING INDEX sqlite_autoindex_messages_1")
                and "dedup_key>? AND dedup_key<?" in line
                for line in plan
            )
        else:
            ok = any(
                "Index Scan using uq_messages_workspace_id_dedup_key" in line for line in plan
            ) and any("Index Cond" in line and "(dedup_key)::text >=" in line for line in plan)
        return found, [] if ok else ["messages not sought by key range:", *plan]

    assert services.db.run(run)[1] == []
