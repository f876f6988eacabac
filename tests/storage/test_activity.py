"""Mail and meetings interleaved on a contact's, lead's or deal's activity: every row
once, in date order (meetings before mail at the same date), keyset pages that enter
each index at the cursor, and a fixed number of statements per page."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.errors import InvalidInput
from crmail.services import Services
from crmail.storage import activity
from crmail.storage import web as web_store
from crmail.storage.calendar_models import EventLink
from crmail.storage.models import Contact, TimelineEntry
from tests.factories import linked_meeting
from tests.storage.test_query_plans import (  # noqa: F401
    T0,
    N,
    _plan,
    _problems,
    _seeks,
    captured,
    seeded,
)

pytestmark = pytest.mark.db

#: meetings on the contact: every third minute of the mail's span, so 1 in 3 shares its
#: start with a message's date
MEETINGS = N // 3


@pytest.fixture
def with_meetings(services: Services, seeded: dict[str, int]) -> dict[str, int]:  # noqa: F811
    def make(s: Session) -> None:
        ws = s.get_one(Contact, seeded["contact"]).workspace_id
        for i in range(MEETINGS):
            linked_meeting(
                s,
                ws,
                seeded["contact"],
                uid=f"m{i}",
                summary=f"Meeting {i}",
                start=T0 + timedelta(minutes=3 * i),
                length=timedelta(minutes=30),
                reason="Ivy is the attendee",
            )

    services.db.run(make)
    return seeded


def read_all(s: Session, ids: dict[str, int], size: int) -> list[tuple[Any, str, int]]:
    me = web_store.user_by_id(s, ids["me"])
    got: list[tuple[Any, str, int]] = []
    cursor = None
    while True:
        page = activity.activity(s, me, "contact", ids["contact"], size, cursor)
        for item in page.items:
            ident = item.message.id if item.message else item.meeting.id  # type: ignore[union-attr]
            got.append((item.at, item.kind, ident))
        cursor = page.next_before
        if cursor is None:
            return got


def test_pages_interleave_mail_and_meetings_by_date_each_once(
    services: Services, with_meetings: dict[str, int]
) -> None:
    def run(s: Session) -> tuple[list[Any], list[Any]]:
        mails = s.execute(
            select(TimelineEntry.message_date, TimelineEntry.message_id).where(
                TimelineEntry.subject_type == "contact",
                TimelineEntry.subject_id == with_meetings["contact"],
            )
        ).all()
        meetings = s.execute(select(EventLink.starts_at, EventLink.event_id)).all()
        expected = sorted(
            [(d, "mail", i) for d, i in mails] + [(d, "meeting", i) for d, i in meetings],
            key=lambda r: (r[0], r[1] == "meeting", r[2]),
            reverse=True,
        )
        return read_all(s, with_meetings, 7), expected

    got, expected = services.db.run(run)
    assert len(expected) == N + MEETINGS
    assert got == expected
    # Ties across kinds are on the pages: a meeting right before the mail of its minute.
    pairs = itertools.pairwise(got)
    assert any(a[0] == b[0] and a[1] == "meeting" and b[1] == "mail" for a, b in pairs)


@pytest.mark.parametrize("page", ["first", "deep"])
def test_each_kind_is_read_in_index_order_from_the_cursor(
    services: Services, with_meetings: dict[str, int], page: str
) -> None:
    def run(s: Session) -> list[str]:
        me = web_store.user_by_id(s, with_meetings["me"])
        cursor = None
        if page == "deep":
            for _ in range(3):
                cursor = activity.activity(s, me, "contact", with_meetings["contact"], 10, cursor)
                cursor = cursor.next_before  # type: ignore[assignment]
        with captured(services) as seen:
            activity.activity(s, me, "contact", with_meetings["contact"], 10, cursor)  # type: ignore[arg-type]
        ordered = [(sql, p) for sql, p in seen if "ORDER BY" in sql and "LIMIT" in sql]
        assert len(ordered) == 2, "one ordered read per kind"
        dialect = s.get_bind().dialect.name
        bad = []
        for sql, params in ordered:
            plan = _plan(s, sql, params)
            bad += [f"{line} in {sql}: {plan}" for line in _problems(dialect, plan, sql)]
            if cursor is not None and not _seeks(dialect, plan):
                bad.append(f"the index is not entered at the cursor: {plan} in {sql}")
        return bad

    assert services.db.run(run) == []


def test_a_page_costs_the_same_statements_whatever_its_size(
    services: Services, with_meetings: dict[str, int]
) -> None:
    def count(size: int) -> int:
        def run(s: Session) -> int:
            me = web_store.user_by_id(s, with_meetings["me"])
            with captured(services) as seen:
                page = activity.activity(s, me, "contact", with_meetings["contact"], size)
            assert {i.kind for i in page.items} == {"mail", "meeting"}
            return len(seen)

        return services.db.run(run)

    assert count(5) == count(60)


def test_a_foreign_cursor_is_invalid_input(
    services: Services, with_meetings: dict[str, int]
) -> None:
    def run(s: Session) -> None:
        me = web_store.user_by_id(s, with_meetings["me"])
        activity.activity(
            s, me, "contact", with_meetings["contact"], 5, "2025-01-01T00:00:00+00:00~7"
        )

    with pytest.raises(InvalidInput):
        services.db.run(run)
