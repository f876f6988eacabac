"""Untagged responses and response codes turned into typed values: capabilities,
server events, COPYUID mappings."""

from __future__ import annotations

from typing import Any

from imapclient import imap_utf7

from crmail.providers.imap.connection import Response, TaggedResult
from crmail.providers.imap.fetch_parser import flagset, modseq_of, parse_fetch
from crmail.providers.imap.results import ServerEvent
from crmail.providers.imap.uidsets import parse_uid_set


def caps_from(text: bytes | str) -> set[str]:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    return {c.upper() for c in text.split()}


def name_of(value: object) -> str:
    """A mailbox name as a response carries it (mUTF-7 bytes, or an atom), decoded."""
    if isinstance(value, bytes):
        return str(imap_utf7.decode(value))
    return str(value)


def server_event(resp: Response) -> ServerEvent | None:
    if resp.kind == b"EXISTS":
        return ServerEvent("exists", number=resp.number)
    if resp.kind == b"EXPUNGE":
        return ServerEvent("expunge", number=resp.number)
    if resp.kind == b"VANISHED":
        text = resp.text
        if text[:9].upper() == b"(EARLIER)":
            text = text[9:]
        return ServerEvent("vanished", uids=frozenset(parse_uid_set(text)))
    if resp.kind == b"FETCH":
        data = parse_fetch([resp])
        for seq, items in data.items():
            uid = items.get(b"UID")
            return ServerEvent(
                "fetch",
                number=seq,
                uid=uid if isinstance(uid, int) else None,
                flags=flagset(items[b"FLAGS"]) if b"FLAGS" in items else None,
                modseq=modseq_of(items.get(b"MODSEQ")),
            )
    return None


def copyuid(res: TaggedResult) -> dict[int, int]:
    """old uid -> new uid from COPYUID (tagged for COPY, untagged OK for MOVE)."""
    sources: list[tuple[bytes | None, bytes]] = [
        (res.code.encode() if res.code else None, res.code_args)
    ]
    sources += [(r.code, r.code_args) for r in res.untagged if r.kind == b"OK"]
    out: dict[int, int] = {}
    for code, args in sources:
        if code is None or code.upper() != b"COPYUID":
            continue
        parts = args.split()
        if len(parts) != 3:
            continue
        src, dst = parse_uid_set(parts[1]), parse_uid_set(parts[2])
        if len(src) == len(dst):
            out.update(zip(src, dst, strict=True))
    return out


def fetch_event_response(seq: int, data: dict[bytes, Any]) -> Response:
    # Rebuild a minimal FETCH response so unsolicited updates seen inside our own
    # FETCH travel through the same event path as all others.
    parts = []
    if isinstance(data.get(b"UID"), int):
        parts.append(b"UID %d" % data[b"UID"])
    if b"FLAGS" in data and isinstance(data[b"FLAGS"], tuple):
        parts.append(b"FLAGS (" + b" ".join(data[b"FLAGS"]) + b")")
    ms = modseq_of(data.get(b"MODSEQ"))
    if ms is not None:
        parts.append(b"MODSEQ (%d)" % ms)
    return Response(b"*", b"FETCH", seq, [b"%d (" % seq + b" ".join(parts) + b")"])
