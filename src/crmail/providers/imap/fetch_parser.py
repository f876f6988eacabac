"""Parsing of FETCH responses (and other IMAP grammar) into Python values; no IO.

imapclient's pure parser does the grammar; a fast path handles the common flat shape.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response, parse_response

from crmail.errors import ProtocolError
from crmail.providers.imap.connection import Record, Response
from crmail.providers.imap.results import FlagUpdate


def text_of(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def flagset(value: object) -> frozenset[str]:
    if not isinstance(value, tuple):
        return frozenset()
    # \Recent is per-session state (RFC 9051 dropped it): keeping it would make the
    # same message's flags differ between two connections and look like changes.
    return frozenset(text_of(f) for f in value) - {"\\Recent"}


def modseq_of(value: object) -> int | None:
    if isinstance(value, tuple) and value:
        value = value[0]
    return value if isinstance(value, int) else None


def aware(value: object) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ProtocolError(f"bad INTERNALDATE {value!r}")
    off = value.utcoffset()
    # imapclient's FixedOffset -> stdlib timezone: plain, picklable, comparable.
    return value.replace(tzinfo=dt.timezone(off if off is not None else dt.timedelta(0)))


def records_of(responses: Iterable[Response]) -> list[Record]:
    out: list[Record] = []
    for r in responses:
        out.extend(r.records)
    return out


# --- FETCH parsing: a fast path for the common shape, imapclient for the rest ---------
#
# imapclient's lexer walks every byte in Python; on a bulk import that was ~80% of the
# CPU time. Almost every FETCH response we ask for is a flat list of
# ``NAME value`` pairs (numbers, flag lists, a quoted INTERNALDATE, NIL, one literal
# per record), which one regex per item handles. Anything else (nested lists,
# escapes, BODY[HEADER.FIELDS (...)]) falls back to imapclient's full grammar.

_SEQ_OPEN = re.compile(rb"(\d+) \(")
_FAST_ITEM = re.compile(
    rb" ?([A-Za-z0-9.-]+(?:\[[A-Za-z0-9. ()-]*\](?:<\d+>)?)?) "
    rb'(?:(\d+)|\(([^()"{}]*)\)|"([^"\\]*)"|(NIL)|\{(\d+)\}\Z)'
)
_INTERNALDATE = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        (
            b"jan",
            b"feb",
            b"mar",
            b"apr",
            b"may",
            b"jun",
            b"jul",
            b"aug",
            b"sep",
            b"oct",
            b"nov",
            b"dec",
        ),
        start=1,
    )
}
_TZ_CACHE: dict[int, dt.timezone] = {}


def _internaldate(text: bytes) -> dt.datetime | None:
    m = _INTERNALDATE.match(text)
    if m is None:
        return None
    day, mon, year, hh, mm, ss, sign, tzh, tzm = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    offset = (int(tzh) * 60 + int(tzm)) * (-1 if sign == b"-" else 1)
    tz = _TZ_CACHE.get(offset)
    if tz is None:
        tz = _TZ_CACHE[offset] = dt.timezone(dt.timedelta(minutes=offset))
    try:
        return dt.datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
    except ValueError:
        return None


def _fast_fetch(resp: Response) -> tuple[int, dict[bytes, Any]] | None:
    """Parse one FETCH response of the common flat shape, or None to fall back."""
    recs = resp.records
    items: dict[bytes, Any] = {}
    seq = -1
    last = len(recs) - 1
    for idx, rec in enumerate(recs):
        text, lit = rec if isinstance(rec, tuple) else (rec, None)
        pos = 0
        end = len(text)
        if idx == 0:
            m0 = _SEQ_OPEN.match(text)
            if m0 is None:
                return None
            seq = int(m0.group(1))
            items[b"SEQ"] = seq
            pos = m0.end()
        if idx == last:
            if lit is not None or not text.endswith(b")"):
                return None
            end -= 1
        while pos < end:
            m = _FAST_ITEM.match(text, pos, end)
            if m is None:
                return None
            name = m.group(1).upper()
            number, inner, quoted_text, nil, lit_size = m.group(2, 3, 4, 5, 6)
            value: Any
            if number is not None:
                value = int(number)
            elif inner is not None:
                value = tuple(int(x) if x.isdigit() else x for x in inner.split())
            elif quoted_text is not None:
                if name == b"INTERNALDATE":
                    value = _internaldate(quoted_text)
                    if value is None:
                        return None
                else:
                    value = quoted_text
            elif nil is not None:
                value = None
            else:
                if lit is None or int(lit_size) != len(lit):
                    return None
                value = lit
            items[name] = value
            pos = m.end()
        if lit is not None and pos != end:
            return None
    return (seq, items) if seq >= 0 else None


def item_starting(data: dict[bytes, Any], prefix: bytes) -> bytes | None:
    return next((k for k in data if k.startswith(prefix)), None)


def parse_fetch(responses: Sequence[Response]) -> dict[int, dict[bytes, Any]]:
    """seq -> {ITEM: value}, like imapclient's ``parse_fetch_response(uid_is_key=False)``."""
    out: dict[int, dict[bytes, Any]] = {}
    slow: list[Response] = []
    for r in responses:
        fast = _fast_fetch(r)
        if fast is None:
            slow.append(r)
            continue
        seq, items = fast
        if seq in out:
            out[seq].update(items)
        else:
            out[seq] = items
    if slow:
        try:
            parsed = parse_fetch_response(records_of(slow), normalise_times=False, uid_is_key=False)
        except (IMAPClientError, ValueError, IndexError, TypeError) as e:
            raise ProtocolError(f"could not parse FETCH response: {e}") from e
        for seq, items in cast(dict[int, dict[bytes, Any]], parsed).items():
            out.setdefault(seq, {}).update(items)
    return out


def parse_generic(records: list[Record]) -> tuple[Any, ...]:
    try:
        return tuple(parse_response(records))
    except (IMAPClientError, ValueError, IndexError, TypeError) as e:
        raise ProtocolError(f"could not parse IMAP response: {e}") from e


def flag_updates(responses: Sequence[Response]) -> Iterator[FlagUpdate]:
    for _seq, items in parse_fetch(responses).items():
        uid = items.get(b"UID")
        if isinstance(uid, int):
            yield FlagUpdate(uid, flagset(items.get(b"FLAGS")), modseq_of(items.get(b"MODSEQ")))
