"""Keyset pagination: a page is "the next rows after the last one shown", never an offset.

Every list is read in the order of an index, and the cursor is the last row's ordering
key and id (times alone tie: many mails share a second), so page 1,000 costs what the
first page does. Cursors are opaque to clients: they pass back what a page gave them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, or_

from crmail.errors import InvalidInput

MAX_PAGE = 200


def clamp(limit: int) -> int:
    return max(1, min(MAX_PAGE, limit))


def encode_cursor(when: datetime, ident: int) -> str:
    return f"{when.isoformat()}~{ident}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        when_s, _, ident_s = cursor.rpartition("~")
        when = datetime.fromisoformat(when_s)
        ident = int(ident_s)
    except ValueError:
        raise InvalidInput("before: not a cursor returned by a previous page") from None
    if when.tzinfo is None:
        raise InvalidInput("before: not a cursor returned by a previous page")
    return when, ident


def older_than(
    when_col: SQLColumnExpression[datetime], id_col: SQLColumnExpression[int], before: str | None
) -> ColumnElement[bool] | None:
    """Rows after the cursor in (when, id) descending order; None without a cursor."""
    if before is None:
        return None
    when, ident = decode_cursor(before)
    # The first term alone bounds the index range (a seek straight to the cursor); the
    # OR only sorts out the rows sharing the cursor's time. An OR of the two ranges
    # alone would be read from the top of the list down to the cursor: a deep page
    # would cost its depth.
    return and_(when_col <= when, or_(when_col < when, id_col < ident))
