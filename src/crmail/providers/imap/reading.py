"""Searching and fetching: UID SEARCH, flags (CONDSTORE/QRESYNC), sizes, headers and
whole messages, in chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from crmail.errors import InvalidInput
from crmail.providers.imap.arguments import HEADER_FIELD_NAME
from crmail.providers.imap.connection import Arg
from crmail.providers.imap.error_mapping import check
from crmail.providers.imap.fetch_parser import (
    aware,
    flag_updates,
    flagset,
    item_starting,
    modseq_of,
    parse_fetch,
)
from crmail.providers.imap.responses import fetch_event_response, server_event
from crmail.providers.imap.results import FlagFetch, HeaderFetch, MessageFetch
from crmail.providers.imap.session import ImapSession
from crmail.providers.imap.uidsets import parse_uid_set, uid_set_chunks


class ReadOps(ImapSession):
    """Reads of the selected mailbox; none of them changes it (BODY.PEEK)."""

    async def uid_search(self, criteria: str) -> list[int]:
        """UID SEARCH with raw IMAP criteria (e.g. ``"SINCE 01-Jan-2025"``)."""
        async with self._lock:
            if self.has("ESEARCH"):
                res = await self._cmd("UID SEARCH", "RETURN (ALL)", criteria)
            else:
                res = await self._cmd("UID SEARCH", criteria)
        check(res, "UID SEARCH")
        uids: list[int] = []
        for r in res.untagged:
            if r.kind == b"SEARCH":
                uids.extend(int(x) for x in r.text.split() if x.isdigit())
            elif r.kind == b"ESEARCH":
                # * ESEARCH (TAG "C0005") UID ALL 1:3,7  -- ALL is absent when empty.
                words = r.text.split()
                for i, w in enumerate(words[:-1]):
                    if w.upper() == b"ALL":
                        uids.extend(parse_uid_set(words[i + 1]))
        return sorted(set(uids))

    async def fetch_flags(
        self, uids: str, *, changed_since: int | None = None, vanished: bool = False
    ) -> FlagFetch:
        items = "(UID FLAGS MODSEQ)" if self.condstore else "(UID FLAGS)"
        args: list[Arg] = [uids, items]
        if vanished and not self.qresync_enabled:
            raise InvalidInput("VANISHED needs QRESYNC; check ImapClient.qresync_enabled")
        if changed_since is not None and self.condstore:
            args.append(f"(CHANGEDSINCE {changed_since}{' VANISHED' if vanished else ''})")
        # Without CONDSTORE, changed_since is dropped: all flags is a correct superset.
        async with self._lock:
            res = await self._cmd("UID FETCH", *args, owns=(b"FETCH", b"VANISHED"))
        check(res, "UID FETCH FLAGS")
        fetches = res.of_kind(b"FETCH")
        gone: set[int] = set()
        for r in res.of_kind(b"VANISHED"):
            ev = server_event(r)
            if ev is not None:
                gone |= ev.uids
        return FlagFetch(tuple(flag_updates(fetches)), frozenset(gone))

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each message still there, by UID."""
        fetched = await self._uid_fetch(
            uids, "(UID RFC822.SIZE)", lambda d: isinstance(d.get(b"RFC822.SIZE"), int)
        )
        return {uid: d[b"RFC822.SIZE"] for uid, d in fetched}

    async def _fetch_bodies(
        self, uids: Sequence[int], section: bytes, peek: str
    ) -> Iterator[tuple[int, dict[bytes, Any], bytes]]:
        """(uid, items, body section) of each message; ``section`` is the item's name, or
        its start when servers differ in how they echo it (``BODY[HEADER.FIELDS``)."""
        items = f"(UID FLAGS INTERNALDATE RFC822.SIZE{' MODSEQ' if self.condstore else ''} {peek})"

        def key(d: dict[bytes, Any]) -> bytes:
            return section if section in d else item_starting(d, section) or section

        fetched = await self._uid_fetch(uids, items, lambda d: key(d) in d)
        return iter([(uid, d, d[key(d)] or b"") for uid, d in fetched])

    async def _uid_fetch(
        self, uids: Sequence[int], items: str, asked: Callable[[dict[bytes, Any]], bool]
    ) -> list[tuple[int, dict[bytes, Any]]]:
        """``UID FETCH uids items`` in chunks: (uid, items) of each message, by UID. A FETCH
        without what was ``asked`` is a change by another client: it becomes an event."""
        out: list[tuple[int, dict[bytes, Any]]] = []
        for chunk, _n in uid_set_chunks(uids):
            async with self._lock:
                res = await self._cmd("UID FETCH", chunk, items, owns=(b"FETCH",))
            check(res, "UID FETCH")
            for seq, data in parse_fetch(res.of_kind(b"FETCH")).items():
                uid = data.get(b"UID")
                if not isinstance(uid, int) or not asked(data):
                    self._conn.events.append(fetch_event_response(seq, data))
                    continue
                out.append((uid, data))
        out.sort(key=lambda x: x[0])
        return out

    async def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None
    ) -> list[HeaderFetch]:
        """Header blocks with flags and size; ``fields``: only these header fields
        (``HEADER.FIELDS``), when the rest (Received chains, DKIM and ARC signatures, often
        most of the bytes) is not needed."""
        if fields:
            if not all(HEADER_FIELD_NAME.fullmatch(f) for f in fields):
                raise InvalidInput(f"not header field names: {list(fields)}")
            section, peek = b"BODY[HEADER.FIELDS", f"BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})]"
        else:
            section, peek = b"BODY[HEADER]", "BODY.PEEK[HEADER]"
        out = []
        for uid, d, header in await self._fetch_bodies(uids, section, peek):
            out.append(
                HeaderFetch(
                    uid=uid,
                    flags=flagset(d.get(b"FLAGS")),
                    internaldate=aware(d.get(b"INTERNALDATE")),
                    size=int(d.get(b"RFC822.SIZE") or 0),
                    modseq=modseq_of(d.get(b"MODSEQ")),
                    header=header,
                )
            )
        return out

    async def fetch_messages(self, uids: Sequence[int]) -> list[MessageFetch]:
        # BODY.PEEK: fetching for sync must never mark mail as read for the user.
        out = []
        for uid, d, raw in await self._fetch_bodies(uids, b"BODY[]", "BODY.PEEK[]"):
            out.append(
                MessageFetch(
                    uid=uid,
                    flags=flagset(d.get(b"FLAGS")),
                    internaldate=aware(d.get(b"INTERNALDATE")),
                    size=int(d.get(b"RFC822.SIZE") or 0),
                    modseq=modseq_of(d.get(b"MODSEQ")),
                    raw=raw,
                )
            )
        return out
