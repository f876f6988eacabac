"""A teammate's Inbox: the visibility rule is wholly in the page's query.

The owner's shared items include mail shared with another member but not with the
viewer (internal mail with a third colleague). Those rows are in the index range the
page walks; the rule, a correlated EXISTS per row in the same statement, drops them in
the database, which stops at the page size (LIMIT). Nothing is filtered or refilled in
Python, so pages are exact and the statements per page do not grow with such rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from crmail.services import Services
from crmail.storage import crm, item_sharing
from crmail.storage import web as web_store
from crmail.storage.models import (
    Contact,
    InboxItem,
    Message,
    Thread,
    TimelineEntry,
    User,
    Workspace,
)
from tests.storage.test_query_plans import (
    _list_statements,
    _plan,
    _problems,
    _seeks,
    captured,
)

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
VISIBLE = 13
#: rows shared with a third member only, after each visible one of the busy owner
HIDDEN_EACH = 15
PAGE = 5


@dataclass(frozen=True)
class Scene:
    viewer: int
    #: owner of the visible mail interleaved with much mail shared with `other` only
    busy: int
    #: owner of the same visible mail and nothing else
    quiet: int
    #: the visible subjects, newest first
    visible: list[str]


@pytest.fixture
def scene(services: Services) -> Scene:
    def make(s: Session) -> Scene:
        ws = Workspace(name="Acme")
        s.add(ws)
        s.flush()
        viewer, busy, quiet, other = (
            User(workspace_id=ws.id, email=f"{n}@acme.test", name=n)
            for n in ("viewer", "busy", "quiet", "other")
        )
        s.add_all([viewer, busy, quiet, other])
        contact = Contact(workspace_id=ws.id, name="Ivy")
        s.add(contact)
        thread = Thread(workspace_id=ws.id, subject="mix")
        s.add(thread)
        s.flush()
        minute = 0

        def message(subject: str, *holders: User) -> Message:
            nonlocal minute
            minute += 1
            m = Message(
                workspace_id=ws.id,
                thread_id=thread.id,
                dedup_key=subject,
                subject=subject,
                received_at=T0 + timedelta(minutes=minute),
            )
            s.add(m)
            s.flush()
            for u in holders:
                s.add(
                    InboxItem(
                        workspace_id=ws.id,
                        user_id=u.id,
                        message_id=m.id,
                        thread_id=thread.id,
                        received_at=m.received_at,
                    )
                )
            return m

        visible: list[str] = []
        for i in range(VISIBLE):
            # Visible to the viewer on a timeline, or as mail that reached them too.
            if i % 3:
                m = message(f"linked {i}", busy, quiet)
                s.add(
                    TimelineEntry(
                        workspace_id=ws.id,
                        message_id=m.id,
                        subject_type="contact",
                        subject_id=contact.id,
                        reason="from Ivy",
                    )
                )
            else:
                m = message(f"to the viewer too {i}", busy, quiet, viewer)
            visible.append(m.subject)
            for j in range(HIDDEN_EACH):
                message(f"busy and other only {i}.{j}", busy, other)
            message(f"busy's private {i}", busy)
        s.flush()
        item_sharing.refresh(s, s.scalars(select(Message.id)))
        hidden_shared = s.scalar(
            select(func.count()).where(InboxItem.user_id == busy.id, InboxItem.shared.is_(True))
        )
        # The case this file is about: the rows the viewer may not see are in the range.
        assert hidden_shared == VISIBLE * (1 + HIDDEN_EACH)
        return Scene(viewer.id, busy.id, quiet.id, visible[::-1])

    made = services.db.run(make)
    if services.db.engine.dialect.name == "postgresql":
        with services.db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    return made


def _walk(services: Services, viewer: int, owner: int) -> tuple[list[str], list[int]]:
    """Every page of ``owner``'s Inbox as ``viewer``: subjects, and statements per page."""

    def run(s: Session) -> tuple[list[str], list[int]]:
        me = web_store.user_by_id(s, viewer)
        subjects: list[str] = []
        counts: list[int] = []
        cursor: str | None = None
        while True:
            with captured(services) as seen:
                page = crm.inbox_for(s, me, owner, PAGE, cursor)
            counts.append(len(seen))
            subjects += [e.message.subject for e in page.items]
            if page.next_before is None:
                return subjects, counts
            assert len(page.items) == PAGE  # a full page whenever there is more
            cursor = page.next_before

    return services.db.run(run)


def test_pages_hold_exactly_the_visible_items_in_order(services: Services, scene: Scene) -> None:
    subjects, _ = _walk(services, scene.viewer, scene.busy)
    assert subjects == scene.visible  # none skipped, none twice, nothing else


def test_statements_per_page_do_not_grow_with_rows_shared_with_others(
    services: Services, scene: Scene
) -> None:
    busy_subjects, busy = _walk(services, scene.viewer, scene.busy)
    quiet_subjects, quiet = _walk(services, scene.viewer, scene.quiet)
    assert busy_subjects == quiet_subjects
    assert busy == quiet
    assert len(set(busy)) == 1, busy


def test_the_page_is_one_limited_index_walk_entered_at_the_cursor(
    services: Services, scene: Scene
) -> None:
    def run(s: Session) -> list[str]:
        me = web_store.user_by_id(s, scene.viewer)
        cursor = crm.inbox_for(s, me, scene.busy, PAGE).next_before
        assert cursor is not None
        with captured(services) as seen:
            crm.inbox_for(s, me, scene.busy, PAGE, cursor)
        [(sql, params)] = [(q, p) for q, p in _list_statements(seen) if "ORDER BY" in q]
        # The rule is inside that statement: a page needs no second read to drop rows.
        assert sql.count("EXISTS") >= 4
        dialect = s.get_bind().dialect.name
        plan = _plan(s, sql, params)
        bad = _problems(dialect, plan, sql)
        if not _seeks(dialect, plan):
            bad.append(f"the index is not entered at the cursor: {plan}")
        return bad

    assert services.db.run(run) == []
