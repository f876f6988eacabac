"""Keyset pages give every row once, in order: the Inbox's open and due-snoozed items
merged, timelines by the stored message date, contacts by id."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmail.services import Services
from crmail.storage import crm
from crmail.storage import web as web_store
from crmail.storage.models import InboxItem, utcnow
from tests.storage.test_query_plans import N, seeded  # noqa: F401

pytestmark = pytest.mark.db


def test_inbox_pages_merge_open_and_due_snoozed_items_in_order(
    services: Services,
    seeded: dict[str, int],  # noqa: F811
) -> None:
    def run(s: Session) -> tuple[list[int], list[int]]:
        # One snoozed item in three is not due yet: it must stay out.
        later = utcnow() + timedelta(days=1)
        snoozed = list(
            s.scalars(
                select(InboxItem.id).where(
                    InboxItem.user_id == seeded["me"], InboxItem.state == "snoozed"
                )
            )
        )
        s.execute(
            update(InboxItem).where(InboxItem.id.in_(snoozed[::3])).values(snooze_until=later)
        )
        expected = list(
            s.scalars(
                select(InboxItem.id)
                .where(
                    InboxItem.user_id == seeded["me"],
                    (InboxItem.state == "open")
                    | ((InboxItem.state == "snoozed") & (InboxItem.snooze_until <= utcnow())),
                )
                .order_by(InboxItem.received_at.desc(), InboxItem.id.desc())
            )
        )
        me = web_store.user_by_id(s, seeded["me"])
        got: list[int] = []
        cursor = None
        while True:
            page = crm.inbox_for(s, me, me.id, 7, cursor)
            got += [e.id for e in page.items]
            cursor = page.next_before
            if cursor is None:
                return got, expected

    got, expected = services.db.run(run)
    assert got == expected
    assert len(got) > 2 * 7  # several pages, both states on them


def test_timeline_pages_follow_the_message_date(
    services: Services,
    seeded: dict[str, int],  # noqa: F811
) -> None:
    def run(s: Session) -> list[object]:
        me = web_store.user_by_id(s, seeded["me"])
        dates = []
        cursor = None
        while True:
            page = crm.timeline(s, me, "contact", seeded["contact"], 11, cursor)
            dates += [(i.message.date, i.message.id) for i in page.items]
            cursor = page.next_before
            if cursor is None:
                return dates

    dates = services.db.run(run)
    assert len(dates) == N
    assert dates == sorted(dates, reverse=True)


def test_contact_pages_after_the_last_id(
    services: Services,
    seeded: dict[str, int],  # noqa: F811
) -> None:
    def run(s: Session) -> list[int]:
        ws = web_store.user_by_id(s, seeded["me"]).workspace_id
        ids: list[int] = []
        while True:
            page = crm.list_contacts(s, ws, limit=13, after=ids[-1] if ids else None)
            if not page:
                return ids
            ids += [c.id for c in page]

    ids = services.db.run(run)
    assert len(ids) == N + 1
    assert ids == sorted(set(ids))
