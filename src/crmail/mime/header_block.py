"""The header block of a received message or MIME part, and header text helpers.

A mailer that forgets the empty line after the header starts its body early. As in
CPython's ``email`` parser and Apache mime4j, the body then starts at the first line that
is neither a header field nor a continuation, so no body text is swallowed. In a MIME
part the fields end there too. In a message's own header they do not: IMAP servers read
the header up to the empty line (``BODY[HEADER.FIELDS]``, on which a sync judges mail
before fetching it, skips such a line and goes on), and the envelope must be the same
whether read from the server's header fields or from the whole message, or one message
would get two dedup keys.
"""

from __future__ import annotations

import re

from crmail.mime.encoded_words import decode_rfc2047, quote_8bit_in_words

__all__ = ["ADDRESS_HEADERS", "Fields", "clean_line", "decoded", "fold_ws", "header_text"]

ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")

# Control characters other than tab/newline: PostgreSQL text cannot hold NUL, and the
# rest only ever come from garbage or attacks.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def fold_ws(text: str) -> str:
    return " ".join(text.split())


def clean_line(text: str) -> str:
    """One-line header text: whitespace folded, control characters removed."""
    return CONTROL_CHARS.sub("", fold_ws(text))


def header_text(value: bytes, defects: list[str]) -> str:
    """Raw header bytes to str. RFC 6532 allows UTF-8; older mailers send cp1252."""
    if value.isascii():
        return value.decode("ascii")
    value = quote_8bit_in_words(value)
    if value.isascii():
        return value.decode("ascii")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        defects.append("8-bit header that is not UTF-8, decoded as cp1252")
        return value.decode("cp1252", errors="replace")


def decoded(value: str, defects: list[str]) -> str:
    text, word_defects = decode_rfc2047(value)
    defects.extend(word_defects)
    return text


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)


class Fields:
    """Header fields of one entity in ``data[start:end]``: lowercased name -> raw
    (unfolded) values in order, and ``body_start``, where the entity's body begins.

    Bounded in one forward pass: the block keeps whole lines up to ``max_bytes``, and one
    field keeps at most a quarter of that, so a giant To: line cannot push Subject: and
    Message-ID: out of the budget. A cut address field loses its partial last address.
    """

    __slots__ = ("bad_lines", "body_start", "by_name", "capped", "cut_fields")

    def __init__(
        self, data: bytes, start: int, end: int, max_bytes: int, *, to_empty_line: bool = False
    ) -> None:
        """``to_empty_line``: fields go on past a line that is not one (a message's own
        header, as IMAP servers read it); the body still starts at that line."""
        self.by_name: dict[str, list[bytes]] = {}
        self.capped = False
        self.bad_lines = 0  # lines that are not header fields, before the body
        self.cut_fields: list[str] = []
        self.body_start = end
        first_bad: int | None = None
        field_budget = max(max_bytes // 4, 1)
        name: str | None = None
        parts: list[bytes] = []
        size = kept = 0
        pos = start
        cut = False
        while pos < end:
            newline = data.find(b"\n", pos, end)
            line_end = end if newline < 0 else newline
            take = min(line_end, pos + field_budget)  # never copy a giant line whole
            line = data[pos:take].rstrip(b"\r")
            long_line = take < line_end
            line_start, pos = pos, line_end + 1
            if not line and not long_line:  # the empty line that ends the block
                self.body_start = min(pos, end) if first_bad is None else first_bad
                break
            kept += len(line)
            if kept > max_bytes:
                self.capped = True
                found = _HEAD_END.search(data, max(line_start - 1, start), end)
                self.body_start = end if found is None else found.end()
                self.body_start = self.body_start if first_bad is None else first_bad
                break
            if line[:1] in (b" ", b"\t"):  # folded continuation of the current field
                if name is not None and not cut:
                    room = field_budget - size
                    cut = long_line or len(line) > room
                    parts.append(line[:room])
                    size += min(len(line), room)
                continue
            self._finish(name, parts, cut)
            name, parts, cut = None, [], long_line
            if line.startswith(b"From "):  # an mbox separator is not a header, nor a body
                continue
            name = _field_name(line)
            if name is None:
                self.bad_lines += 1
                if first_bad is None:
                    first_bad = self.body_start = line_start
                if to_empty_line:
                    continue
                break
            parts.append(line.partition(b":")[2])
            size = len(parts[0])
        self._finish(name, parts, cut)

    def _finish(self, name: str | None, parts: list[bytes], cut: bool) -> None:
        if name is None:
            return
        value = b"".join(parts).strip()
        if cut:
            self.cut_fields.append(name)
            if name in ADDRESS_HEADERS:
                # Keep complete addresses only: a cut one could be a wrong but valid address.
                value = value[: max(value.rfind(b","), 0)]
        self.by_name.setdefault(name, []).append(value)

    def first(self, name: str) -> bytes | None:
        values = self.by_name.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[bytes]:
        return self.by_name.get(name, [])

    def defects(self) -> list[str]:
        found = []
        if self.capped:
            found.append("header block capped")
        found.extend(f"header field {name} capped" for name in self.cut_fields)
        if self.bad_lines and self.by_name:
            found.append("body starts early, at a header line without a colon")
        return found


def _field_name(line: bytes) -> str | None:
    """Lowercased field name of a header line, or None when it is not one."""
    name, sep, _ = line.partition(b":")
    name = name.rstrip(b" \t")  # obsolete syntax allows "Subject :"
    if not sep or _FIELD_NAME.fullmatch(name) is None:
        return None
    return name.decode("ascii").lower()
