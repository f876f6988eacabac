"""Folder listing: LIST responses to folders, and the role (special use) of each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from imapclient import imap_utf7

from crmail.errors import ProtocolError
from crmail.providers.imap.connection import Response
from crmail.providers.imap.fetch_parser import flagset, parse_generic, text_of
from crmail.providers.imap.results import FolderInfo

_SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
SPECIAL_USE_BY_LOWER = {s.lower(): s for s in _SPECIAL_USES}
# Name heuristics for servers without SPECIAL-USE, checked against the full name
# and the last path component, case-insensitively.
_HEURISTICS: dict[str, str] = {
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "sent messages": "\\Sent",
    "sent mail": "\\Sent",
    "[gmail]/sent mail": "\\Sent",
    "[google mail]/sent mail": "\\Sent",
    "archive": "\\Archive",
    "archives": "\\Archive",
    "[gmail]/all mail": "\\All",
    "[google mail]/all mail": "\\All",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "deleted messages": "\\Trash",
    "[gmail]/trash": "\\Trash",
    "junk": "\\Junk",
    "junk e-mail": "\\Junk",
    "junk email": "\\Junk",
    "spam": "\\Junk",
    "[gmail]/spam": "\\Junk",
    "drafts": "\\Drafts",
    "draft": "\\Drafts",
    "[gmail]/drafts": "\\Drafts",
}


def folders_from_list(responses: Iterable[Response], *, use_flags: bool) -> list[FolderInfo]:
    """The folders of LIST responses; ``use_flags``: the server announces SPECIAL-USE.
    Roles it does not announce are guessed from well-known names."""
    folders: list[tuple[str, bytes, str | None, frozenset[str]]] = []
    for r in responses:
        parsed = parse_generic(r.records)
        if len(parsed) < 3:
            raise ProtocolError(f"bad LIST response {r.text!r}")
        flags_raw, delim, name = parsed[0], parsed[1], parsed[2]
        # imapclient turns all-digit names into ints; the wire form is the digits.
        raw = str(name).encode() if isinstance(name, int) else cast(bytes, name)
        folders.append(
            (
                imap_utf7.decode(raw),
                raw,
                text_of(delim) if delim is not None else None,
                flagset(flags_raw),
            )
        )
    roles: dict[str, str | None] = {}
    taken: set[str] = set()
    for name, _raw, _d, flags in folders:
        role = None
        if name.upper() == "INBOX":
            role = "\\Inbox"
        elif use_flags:
            role = next(
                (
                    SPECIAL_USE_BY_LOWER[f.lower()]
                    for f in flags
                    if f.lower() in SPECIAL_USE_BY_LOWER
                ),
                None,
            )
        roles[name] = role
        if role:
            taken.add(role)
    # Name heuristics only fill roles the server did not announce, first match wins,
    # top-level folders before nested ones.
    for name, _raw, delim, flags in sorted(folders, key=lambda f: (f[0].count(f[2] or "/"), f[0])):
        if roles[name] is not None or "\\noselect" in {f.lower() for f in flags}:
            continue
        leaf = name.rsplit(delim, 1)[-1] if delim else name
        role = _HEURISTICS.get(name.lower()) or _HEURISTICS.get(leaf.lower())
        if role and role not in taken:
            roles[name] = role
            taken.add(role)
    return [
        FolderInfo(name=n, raw_name=raw, delimiter=d, flags=f, special_use=roles[n])
        for n, raw, d, f in folders
    ]
