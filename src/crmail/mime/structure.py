"""The MIME structure of a message: its leaf parts, found by cutting multipart bodies
on their boundaries with ``bytes.find``, and the transfer decoding of a part's bytes.

Nothing is decoded during the walk: a leaf is its interpreted headers and a byte range
of the raw message, so choosing the body (:mod:`crmail.mime.body`) and extracting one
attachment later walk the same structure without decoding the rest.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from crmail.mime.header_block import Fields, clean_line, decoded, header_text
from crmail.mime.limits import ParseLimits
from crmail.mime.params import parse_params

__all__ = ["Leaf", "Part", "Structure", "decode_transfer", "walk"]


_B64_WS = b" \t\r\n"
_B64_VALID = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _decode_base64(data: bytes, defects: list[str]) -> tuple[bytes, str | None]:
    compact = data.translate(None, _B64_WS)
    if len(compact) % 4 == 0 and _B64_VALID.fullmatch(compact):
        return binascii.a2b_base64(compact), None
    # Damaged: truncated mail loses padding (repairable); junk characters mean the
    # decoded bytes are garbage, which the caller reports as a placeholder.
    has_junk = _B64_JUNK.search(compact.rstrip(b"=")) is not None
    clean = _B64_JUNK.sub(b"", compact)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    defects.append("invalid base64" if has_junk else "base64 padding repaired")
    return binascii.a2b_base64(clean), "undecodable" if has_junk else None


def _decode_uuencode(data: bytes, defects: list[str]) -> tuple[bytes, str | None]:
    out = bytearray()
    inside = False
    for line in data.splitlines():
        if not inside:
            inside = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`"):
            break
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            defects.append("invalid uuencode")
            return bytes(out), "undecodable"
    return bytes(out), None


def decode_transfer(data: bytes, cte: str, defects: list[str]) -> tuple[bytes, str | None]:
    """Undo Content-Transfer-Encoding; returns (bytes, placeholder reason or None)."""
    if cte == "base64":
        return _decode_base64(data, defects)
    if cte == "quoted-printable":
        return binascii.a2b_qp(data), None
    if cte in ("", "7bit", "8bit", "binary"):
        return data, None
    if cte in ("x-uuencode", "uuencode", "x-uue"):
        return _decode_uuencode(data, defects)
    defects.append(f"unknown transfer encoding {cte[:40]!r}")
    return data, "undecodable"


# --- parts -------------------------------------------------------------------------


@dataclass(slots=True)
class Part:
    """Interpreted MIME headers of one entity."""

    content_type: str
    params: dict[str, str]
    cte: str
    disposition: str
    filename: str | None
    content_id: str | None


@dataclass(frozen=True, slots=True)
class Leaf:
    """A part that is not a multipart: its headers and body bytes ``raw[start:end]``."""

    part: Part
    start: int
    end: int
    in_alternative: bool


@dataclass(slots=True)
class Structure:
    leaves: list[Leaf] = field(default_factory=list)
    parts_seen: int = 0
    parts_capped: bool = False
    depth_capped: bool = False


_PATH_SEPARATORS = re.compile(r".*[/\\]")


def _part_headers(fields: Fields, default_type: str, defects: list[str]) -> Part:
    def value(name: str) -> str:
        raw = fields.first(name)
        return "" if raw is None else header_text(raw, defects)

    content_type, params = parse_params(value("content-type"), defects)
    if content_type.count("/") != 1 or " " in content_type:
        if content_type:
            defects.append(f"invalid content type {content_type[:60]!r}")
        content_type = default_type
    disposition, disp_params = parse_params(value("content-disposition"), defects)
    raw_name = disp_params.get("filename") or params.get("name")
    filename = None
    if raw_name:
        # Outlook RFC 2047-encodes filenames; a path is never meaningful here.
        filename = clean_line(_PATH_SEPARATORS.sub("", decoded(raw_name, defects))) or None
    cid = clean_line(value("content-id")).strip("<>").strip() or None
    cte = clean_line(value("content-transfer-encoding")).lower().strip("\"'")
    return Part(content_type, params, cte, disposition, filename, cid)


# --- multipart bodies ----------------------------------------------------------------


class _LongerBoundaries:
    """Whether a multipart body declares a nested boundary that starts with ours.

    RFC 2046 5.1.1 matches boundaries as line prefixes ("--b" then anything), and some
    mailers do write text after the delimiter. A nested part whose boundary extends
    ours ("b" and "b-1") breaks that rule but exists; for such a body a delimiter must
    be followed by nothing but whitespace. Looked up once, on the first ambiguous line.
    """

    __slots__ = ("_answer", "_boundary", "_data", "_end", "_start")

    def __init__(self, data: bytes, start: int, end: int, boundary: bytes) -> None:
        self._data, self._start, self._end, self._boundary = data, start, end, boundary
        self._answer: bool | None = None

    def __bool__(self) -> bool:
        if self._answer is None:
            pattern = rb'boundary\s*=\s*"?' + re.escape(self._boundary) + rb'[^"\s;]'
            found = re.compile(pattern, re.I).search(self._data, self._start, self._end)
            self._answer = found is not None
        return self._answer


def split_multipart(
    data: bytes, start: int, end: int, boundary: bytes
) -> tuple[list[tuple[int, int]], bool]:
    """Body ranges of the parts of a multipart body; (ranges, close delimiter seen)."""
    delimiter = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    part_start: int | None = None
    longer = _LongerBoundaries(data, start, end, boundary)
    pos = start
    while True:
        i = data.find(delimiter, pos, end)
        if i < 0:
            break
        pos = i + 1
        if i != start and data[i - 1] != 0x0A:  # delimiters start a line
            continue
        after = i + len(delimiter)
        closing = data.startswith(b"--", after, end)
        line_end = data.find(b"\n", after, end)
        line_end = end if line_end < 0 else line_end + 1
        trailing = data[after + (2 if closing else 0) : line_end].strip()
        if trailing and longer:
            continue  # the delimiter of a nested part whose boundary extends ours
        if part_start is not None:
            # The CRLF before a delimiter belongs to the delimiter, not the part.
            part_end = max(part_start, i - 1)
            if part_end > part_start and data[part_end - 1] == 0x0D:
                part_end -= 1
            ranges.append((part_start, part_end))
        if closing:
            return ranges, True
        part_start = pos = line_end
    if part_start is not None:
        ranges.append((part_start, end))
    return ranges, False


# --- the walk ------------------------------------------------------------------------


def walk(raw: bytes, fields: Fields, limits: ParseLimits, defects: list[str]) -> Structure:
    """The leaves of the message whose top-level header is ``fields``, in order."""
    structure = Structure()
    _entity(raw, structure, limits, defects, fields, (fields.body_start, len(raw)), 0, "text/plain", False)  # fmt: skip
    return structure


def _entity(
    raw: bytes,
    structure: Structure,
    limits: ParseLimits,
    defects: list[str],
    fields: Fields,
    body: tuple[int, int],
    depth: int,
    default_type: str,
    in_alternative: bool,
) -> None:
    part = _part_headers(fields, default_type, defects)
    if part.content_type.startswith("multipart/"):
        if _multipart(raw, structure, limits, defects, part, body, depth):
            return
        if not raw[body[0] : body[1]].strip():
            return  # an empty unusable multipart holds nothing to show
        part.content_type = "text/plain"  # unusable multipart: show it as text
    structure.leaves.append(Leaf(part, body[0], body[1], in_alternative))


def _multipart(
    raw: bytes,
    structure: Structure,
    limits: ParseLimits,
    defects: list[str],
    part: Part,
    body: tuple[int, int],
    depth: int,
) -> bool:
    """Walk the children; False when the multipart structure is unusable."""
    boundary = part.params.get("boundary", "").strip()
    if not boundary:
        defects.append("multipart without boundary")
        return False
    ranges, closed = split_multipart(
        raw, body[0], body[1], boundary.encode("utf-8", errors="replace")
    )
    if not ranges:
        defects.append("multipart boundary not found")
        return False
    if not closed:
        defects.append("multipart close delimiter missing")
    if depth >= limits.max_depth:
        structure.depth_capped = True
        return True
    child_type = "message/rfc822" if part.content_type == "multipart/digest" else "text/plain"
    alternative = part.content_type == "multipart/alternative"
    for start, end in ranges:
        if structure.parts_seen >= limits.max_parts:
            structure.parts_capped = True
            return True
        structure.parts_seen += 1
        child = Fields(raw, start, end, limits.max_header_bytes)
        defects.extend(child.defects())
        _entity(raw, structure, limits, defects, child, (child.body_start, end), depth + 1, child_type, alternative)  # fmt: skip
    return True
