"""Header fields of outgoing mail, written byte by byte. Pure, no IO.

crmail writes every header value itself rather than handing text to the stdlib
``email`` package: that package parses whatever it is given as if it came off the wire,
so a subject, display name or filename holding an RFC 2047 encoded word that decodes
to CR/LF (``=?utf-8?q?x=0D=0AX-Injected=3A_1?=``) became a header of its own
(CVE-2024-6923 and its relatives, fixed differently in each Python version).

Here text is never re-interpreted: control characters become spaces, and any value
that is not plain printable ASCII — or that contains ``=?`` — is written entirely as
base64 encoded words, which decode back to exactly that text (literal ``=?`` included)
and cannot contain a line break. Folding only ever happens between tokens.
:func:`check_header_block` then proves the result: parsed back, each header block holds
exactly the fields that were written, with exactly the values that were written.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser

from crmail.errors import InvalidInput

__all__ = [
    "Field",
    "address_field",
    "check_header_block",
    "content_field",
    "msg_id_field",
    "one_line",
    "token_field",
    "unstructured_field",
]

#: RFC 5322 2.1.1: lines SHOULD stay within 78 characters
LINE = 78
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PRINTABLE_ASCII = re.compile(r"[ -~]*\Z")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*\Z")  # atext and spaces: a plain phrase
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 2045 token (MIME values)
_PARAM_PLAIN = re.compile(r"[ !#-\[\]-~]{1,60}\Z")  # quotable without escapes
# RFC 2231 attribute-char: what may stay unescaped in an extended parameter value
_ATTR_SAFE = "!#$&+-.^_`|~"
_ENCODED_CHUNK = 30  # UTF-8 octets per encoded word: 52 characters once encoded
_LONGEST_WORD = 900  # a longer plain word would break the 998-octet line limit
_QUOTED_MAX = 200
_UNFOLD = re.compile(r"\r\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field as written: its name and its complete, folded bytes."""

    name: str
    raw: bytes

    @property
    def value(self) -> bytes:
        """The value with folding undone, as a reader sees it."""
        return _UNFOLD.sub("", self.raw.decode("utf-8")).split(":", 1)[1].encode("utf-8")


def one_line(text: str) -> str:
    """Header text on one line: a pasted newline must never start a new header."""
    return " ".join(_CONTROL.sub(" ", text).split())


# --- field builders ----------------------------------------------------------------------


def unstructured_field(name: str, text: str) -> Field:
    """Subject and other free text (RFC 5322 unstructured)."""
    text = one_line(text)
    return _fold(name, _plain_words(text) if _writable_as_is(text) else _encoded_words(text))


def address_field(name: str, mailboxes: Sequence[tuple[str, str]]) -> Field:
    """From/To/Cc: ``(display name, addr-spec)`` pairs, the addr-specs already validated.

    An addr-spec is written as given (UTF-8 when its local part is not ASCII: RFC 6532).
    """
    tokens: list[str] = []
    for i, (display, addr_spec) in enumerate(mailboxes):
        comma = "," if i < len(mailboxes) - 1 else ""
        phrase = _phrase(one_line(display))
        if phrase:
            tokens += [*phrase, f"<{addr_spec}>{comma}"]
        else:
            tokens.append(f"{addr_spec}{comma}")
    return _fold(name, tokens)


def msg_id_field(name: str, ids: Sequence[str]) -> Field:
    """Message-ID, In-Reply-To, References: ids (without <>) already checked as usable."""
    return _fold(name, [f"<{msg_id}>" for msg_id in dict.fromkeys(ids)])


def token_field(name: str, value: str) -> Field:
    """A value crmail generates itself (Date, MIME-Version, a transfer encoding)."""
    if not _PRINTABLE_ASCII.match(value) or "=?" in value:
        raise ValueError(f"not a plain header value: {value!r}")
    return _fold(name, value.split())


def content_field(name: str, value: str, params: Sequence[tuple[str, str]] = ()) -> Field:
    """Content-Type / Content-Disposition: ``value; a="b"; c*=utf-8''...`` (RFC 2045, 2231)."""
    if not all(_TOKEN.match(part) for part in value.split("/")):
        raise ValueError(f"not a MIME value: {value!r}")
    tokens = [value]
    for key, text in params:
        tokens += _parameter(key, one_line(text))
    return _fold(name, [f"{t};" for t in tokens[:-1]] + tokens[-1:])


# --- encodings ---------------------------------------------------------------------------


def _writable_as_is(text: str) -> bool:
    return (
        bool(_PRINTABLE_ASCII.match(text))
        and "=?" not in text
        and all(len(w) <= _LONGEST_WORD for w in text.split(" "))
    )


def _plain_words(text: str) -> list[str]:
    return text.split(" ") if text else []


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 "B" encoded words; adjacent ones decode with nothing between them."""
    words, chunk = [], b""
    for char in text:
        octets = char.encode("utf-8")
        if len(chunk) + len(octets) > _ENCODED_CHUNK:
            words.append(chunk)
            chunk = b""
        chunk += octets
    if chunk:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words]


def _phrase(display: str) -> list[str]:
    """A display name as phrase tokens: atoms, one quoted string, or encoded words."""
    if not display:
        return []
    if _ATOMS.match(display) and _writable_as_is(display):
        return display.split(" ")
    if _PRINTABLE_ASCII.match(display) and "=?" not in display and len(display) <= _QUOTED_MAX:
        return ['"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(display)


def _parameter(key: str, text: str) -> list[str]:
    """``key="text"`` when plain, else RFC 2231 ``key*0*=utf-8''...`` sections."""
    if _PARAM_PLAIN.match(text) and "=?" not in text:
        return [f'{key}="{text}"']
    quoted = urllib.parse.quote(text, safe=_ATTR_SAFE)
    sections = [quoted[i : i + 60] for i in range(0, len(quoted), 60)]
    # A section must not split a %XX escape: move a broken escape's start to the next one.
    for i in range(len(sections) - 1):
        cut = sections[i].rfind("%", len(sections[i]) - 2)
        if cut >= 0:
            sections[i], sections[i + 1] = sections[i][:cut], sections[i][cut:] + sections[i + 1]
    if len(sections) == 1:
        return [f"{key}*=utf-8''{sections[0]}"]
    head = [f"{key}*0*=utf-8''{sections[0]}"]
    return head + [f"{key}*{i}*={s}" for i, s in enumerate(sections[1:], start=1)]


def _fold(name: str, tokens: Sequence[str]) -> Field:
    """``Name: t1 t2 ...``, breaking lines between tokens only, at 78 columns."""
    out = name + ":"
    line = len(out)
    for token in tokens:
        if line + 1 + len(token) > LINE and line > len(name) + 1:
            out += "\r\n"
            line = 0
        out += " " + token
        line += 1 + len(token)
    return Field(name, out.encode("utf-8"))


# --- verification ------------------------------------------------------------------------


def check_header_block(block: bytes, fields: Sequence[Field]) -> None:
    """Prove that the header block ``block`` parses back to exactly ``fields``.

    Raises :class:`InvalidInput` when anything differs: a value that produced an extra
    field, a line break, or an early end of the block. Nothing crmail writes should ever
    get here; this is the proof, not the fix.
    """
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    got = [(k.lower(), _wire_value(v)) for k, v in parsed.raw_items()]
    want = [(f.name.lower(), f.value.strip()) for f in fields]
    if got != want or parsed.get_payload():
        raise _unsafe(f"the header fields parse back as {[k for k, _ in got]}")


def _wire_value(value: str) -> bytes:
    unfolded = _UNFOLD.sub("", value)
    if "\r" in unfolded or "\n" in unfolded:
        return b"\n"  # never equal to an expected value
    return unfolded.strip().encode("utf-8", "surrogateescape")


def _unsafe(why: str) -> InvalidInput:
    return InvalidInput(
        f"The message cannot be written safely: {why}.",
        hint="Remove unusual characters from the subject, names and file names.",
    )
