"""Command arguments: mailbox names in modified UTF-7, checked flag and field names."""

from __future__ import annotations

import re
from collections.abc import Iterable

from imapclient import imap_utf7

from crmail.errors import InvalidInput
from crmail.providers.imap.connection import Literal, quoted

_FLAG_OK = re.compile(r"\\?[^\s()\"\\{}%*\]\x00-\x1f\x7f]+\Z")
HEADER_FIELD_NAME = re.compile(r"[A-Za-z0-9-]+")


def mailbox_arg(folder: str | bytes) -> bytes | Literal:
    # str names are encoded to modified UTF-7; bytes are sent as given (raw_name).
    raw = imap_utf7.encode(folder) if isinstance(folder, str) else folder
    return quoted(raw)


def folder_text(folder: str | bytes) -> str:
    return imap_utf7.decode(folder) if isinstance(folder, bytes) else folder


def flags_arg(flags: Iterable[str]) -> str:
    items = list(flags)
    for f in items:
        if not _FLAG_OK.match(f):
            raise InvalidInput(f"invalid IMAP flag {f!r}")
    return "(" + " ".join(items) + ")"
