"""RFC 2047 encoded words (``=?charset?Q?text?=``) in header values.

Legacy mailers put raw 8-bit bytes inside Q-encoded words (``=?iso-8859-1?Q?Gr\\xfc\\xdfe?=``)
instead of ``=XX`` escapes. Those bytes are in the word's declared charset, so they are
escaped back at the byte level (:func:`quote_8bit_in_words`) before the header is turned
into text; decoding the header first would have guessed another charset for them.
"""

from __future__ import annotations

import binascii
import re

from crmail.mime.charsets import decode_bytes

__all__ = ["decode_rfc2047", "quote_8bit_in_words"]

# Whitespace is not allowed inside a word, but some mailers put spaces in Q text; we stay
# strict there and leave such words undecoded.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_ENCODED_WORD_BYTES = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def _escape_byte(match: re.Match[bytes]) -> bytes:
    return b"=%02X" % match.group()[0]


def _quote_word(match: re.Match[bytes]) -> bytes:
    charset, encoding, payload = match.groups()
    if encoding in b"bB":
        return match.group()  # 8-bit bytes are not base64: left to the lenient decoder
    return b"=?" + charset + b"?" + encoding + b"?" + _EIGHT_BIT.sub(_escape_byte, payload) + b"?="


def quote_8bit_in_words(value: bytes) -> bytes:
    """Raw 8-bit bytes inside Q-encoded words escaped as ``=XX``: they then decode in the
    word's declared charset like any other encoded byte."""
    if b"=?" not in value:
        return value
    return _ENCODED_WORD_BYTES.sub(_quote_word, value)


def _decode_word_payload(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        raw = payload.encode("ascii", errors="ignore")
        # Lenient base64: drop junk and repair the padding.
        raw = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        raw = raw[: len(raw) - len(raw) % 4] if len(raw) % 4 == 1 else raw
        raw += b"=" * (-len(raw) % 4)
        return binascii.a2b_base64(raw)
    return binascii.a2b_qp(payload.encode("ascii", errors="replace"), header=True)


def decode_rfc2047(value: str) -> tuple[str, list[str]]:
    """Decode the encoded words in a header value; returns (text, defects).

    Adjacent encoded words in the same charset are joined before decoding, because
    mailers split multi-byte characters across words.
    """
    if "=?" not in value:
        return value, []
    defects: list[str] = []
    out: list[str] = []
    pos = 0
    pending: bytearray = bytearray()
    pending_charset = ""

    def flush() -> None:
        nonlocal pending
        if pending:
            text, defect = decode_bytes(bytes(pending), pending_charset)
            out.append(text)
            if defect:
                defects.append(defect)
            pending = bytearray()

    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        adjacent = pos > 0 and _BETWEEN_WORDS.fullmatch(gap) is not None and bool(pending)
        charset = match.group(1)
        if not adjacent or charset.lower() != pending_charset.lower():
            flush()
            if not adjacent:
                out.append(gap)
        try:
            pending += _decode_word_payload(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            defects.append("undecodable encoded word")
            flush()
            out.append(match.group(0))
        pending_charset = charset
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out), defects
