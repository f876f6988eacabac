"""MIME parts of outgoing mail: bodies, attachments, multipart containers. Pure, no IO.

Every body is 7-bit (quoted-printable or base64 unless it already is short ASCII
lines), so no message depends on the server's 8BITMIME and no line exceeds 998
octets. Part headers are written by :mod:`crmail.mime.headers`.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from crmail.mime.headers import Field, content_field, msg_id_field, one_line, token_field

__all__ = [
    "Part",
    "calendar_part",
    "file_part",
    "header_block",
    "multipart",
    "render",
    "text_part",
]

_MIME_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)\Z")
_SEVEN_BIT_LINE = re.compile(rb"[\t -~]{0,76}\Z")


@dataclass(frozen=True, slots=True)
class Part:
    fields: tuple[Field, ...]
    body: bytes  # as transmitted: transfer-encoded, CRLF line ends
    children: tuple[Part, ...] = ()

    def walk(self) -> Iterator[Part]:
        """This part, then its children depth first (the order parsers walk them)."""
        yield self
        for child in self.children:
            yield from child.walk()


def render(part: Part) -> bytes:
    return header_block(part) + part.body


def header_block(part: Part) -> bytes:
    """The part's header fields and the empty line that ends them."""
    return b"\r\n".join(f.raw for f in part.fields) + b"\r\n\r\n"


def text_part(text: str, subtype: str) -> Part:
    # Normalise newlines: a lone CR would otherwise survive into the encoded body.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    encoding, body = _encode_text(text.encode("utf-8"))
    content_type = content_field("Content-Type", f"text/{subtype}", [("charset", "utf-8")])
    return Part((content_type, token_field("Content-Transfer-Encoding", encoding)), body)


def calendar_part(ics: bytes, method: str) -> Part:
    """An iMIP body (RFC 6047): text/calendar with the iTIP method, beside the text."""
    fields = (
        content_field(
            "Content-Type", "text/calendar", [("charset", "utf-8"), ("method", method.upper())]
        ),
        token_field("Content-Transfer-Encoding", "base64"),
    )
    return Part(fields, _crlf(base64.encodebytes(ics)))


def file_part(
    filename: str, content_type: str, data: bytes, *, inline: bool, content_id: str | None
) -> Part:
    """An attachment (or inline image), always base64: its bytes arrive exactly as given."""
    match = _MIME_TYPE.match(content_type.strip().lower())
    mime_type = "/".join(match.groups()) if match else "application/octet-stream"
    name = one_line(filename) or "attachment"
    fields = [
        content_field("Content-Type", mime_type),
        token_field("Content-Transfer-Encoding", "base64"),
        content_field(
            "Content-Disposition", "inline" if inline else "attachment", [("filename", name)]
        ),
    ]
    if content_id is not None:
        fields.append(msg_id_field("Content-ID", [content_id]))
    return Part(tuple(fields), _crlf(base64.encodebytes(data)))


def multipart(subtype: str, children: Sequence[Part]) -> Part:
    rendered = [render(child) for child in children]
    boundary = _boundary(rendered)
    # RFC 2387 requires the root part's type on multipart/related.
    params = [("type", "text/html")] if subtype == "related" else []
    params.append(("boundary", boundary))
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + b"\r\n" + r + b"\r\n" for r in rendered) + delimiter + b"--\r\n"
    return Part(
        (content_field("Content-Type", f"multipart/{subtype}", params),), body, tuple(children)
    )


def _boundary(contents: Sequence[bytes]) -> str:
    # "=_" cannot occur in base64 or quoted-printable text; the check covers 7-bit parts.
    while True:
        boundary = "=_crmail_" + secrets.token_hex(12)
        if not any(boundary.encode("ascii") in c for c in contents):
            return boundary


def _encode_text(data: bytes) -> tuple[str, bytes]:
    """7bit when already short printable ASCII lines, else the shorter of QP and base64."""
    if all(_SEVEN_BIT_LINE.match(line) for line in data.split(b"\n")):
        return "7bit", _crlf(data)
    quoted = binascii.b2a_qp(data, istext=True)
    encoded = base64.encodebytes(data)
    if len(quoted) <= len(encoded):
        return "quoted-printable", _crlf(quoted)
    return "base64", _crlf(encoded)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")
