"""The visibility rule's SQL stays correlated to the caller's query, on both dialects.

An EXISTS that loses its correlation is true for every row ("exists any message the
viewer sent"): a teammate would see private mail. SQLAlchemy's FROM linter sees that
shape as a cartesian product inside the subquery; these tests compile the rule with the
linter on, warnings recorded, the way an engine compiles it before running it.
"""

from __future__ import annotations

import re
import warnings

import pytest
from sqlalchemy import Select, exc, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import FROM_LINTING, WARN_LINTING

from crmail.storage.models import InboxItem, Message, TimelineEntry
from crmail.storage.views import UserInfo
from crmail.storage.visibility import _ALIASES, message_visible

VIEWER = UserInfo(id=2, workspace_id=1, email="mate@acme.test", name="Mate", role="member")
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


def lint(stmt: Select[tuple[int]], dialect: Dialect) -> tuple[str, list[str]]:
    """The statement's SQL and the cartesian-product warnings compiling it gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sql = str(stmt.compile(dialect=dialect, linting=FROM_LINTING | WARN_LINTING))
    found = [
        str(w.message)
        for w in seen
        if issubclass(w.category, exc.SAWarning) and "cartesian product" in str(w.message)
    ]
    return sql, found


_EXISTS_FROM = re.compile(r"EXISTS \(SELECT \*\s+FROM (.*?)\s+WHERE", re.DOTALL)
_ALIAS = re.compile(r"\w+ AS \w+_\d+")


def rule_subqueries(sql: str) -> list[str]:
    """The FROM lists of the rule's subqueries in ``sql`` (``EXISTS (SELECT * FROM ...``)."""
    return [f.strip() for f in _EXISTS_FROM.findall(sql)]


def leaking_subqueries(sql: str) -> list[str]:
    """Those reading a table of their own that is not one of the rule's aliases: a table
    of the enclosing query the subquery failed to correlate to, so its rows are not the
    caller's row but every row."""
    return [
        f
        for f in rule_subqueries(sql)
        if not all(_ALIAS.fullmatch(t.strip()) for t in f.split(","))
    ]


CALLERS = {
    "messages": lambda: select(Message.id).where(message_visible(VIEWER, Message.id)),
    "inbox items": lambda: select(InboxItem.id).where(
        message_visible(VIEWER, InboxItem.message_id)
    ),
    "timeline entries": lambda: select(TimelineEntry.id).where(
        message_visible(VIEWER, TimelineEntry.message_id)
    ),
    "one id": lambda: select(message_visible(VIEWER, 7)),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("caller", CALLERS)
def test_every_subquery_of_the_rule_correlates_to_the_callers_table(
    caller: str, dialect: str
) -> None:
    sql, cartesian = lint(CALLERS[caller](), DIALECTS[dialect])
    assert cartesian == []
    # Five EXISTS, each FROM its own aliases only: the caller's table is named once, in
    # the outer FROM, and never inside a subquery.
    assert len(rule_subqueries(sql)) == 5, sql
    assert leaking_subqueries(sql) == [], sql


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_checks_see_an_uncorrelated_rule(dialect: str) -> None:
    # The two shapes that make the rule true for every row, so that the checks here and
    # over every route (tests/api/test_visibility_sql.py) are known to catch them:
    # the rule on a column the query does not read (Message.id in a query over Inbox
    # items: the reason the column is a required argument) ...
    wrong_column = select(InboxItem.id).where(message_visible(VIEWER, Message.id))
    sql, _ = lint(wrong_column, DIALECTS[dialect])
    assert len(leaking_subqueries(sql)) == 5, sql
    # ... and a column of the alias not adapted to it (the base table's): the linter's
    # "cartesian product" between the alias and the table.
    sent = _ALIASES[-1]
    unresolved = select(InboxItem.id).where(
        exists()
        .where(sent.id == InboxItem.message_id, Message.sent_by_user_id == VIEWER.id)
        .correlate(InboxItem)
    )
    sql, cartesian = lint(unresolved, DIALECTS[dialect])
    assert leaking_subqueries(sql) != [], sql
    assert cartesian != [], sql


def test_the_column_is_required() -> None:
    with pytest.raises(TypeError):
        message_visible(VIEWER)  # type: ignore[call-arg]
