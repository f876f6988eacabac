"""Charset resolution and lenient decoding (bodies; encoded words build on it).

Mail in the wild declares charsets Python does not know under that name, or
mislabels them. Decoding never raises here: unknown charsets fall back to UTF-8 (when
the bytes are valid UTF-8) or Latin-1, and the caller gets a defect string to record.
"""

from __future__ import annotations

import codecs
import functools

# Names seen in real mail that Python's codec registry lacks or that are better served
# by a superset codec (what browsers and mail clients actually do).
_ALIASES: dict[str, str] = {
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-roman": "mac-roman",
    "x-mac-greek": "mac-greek",
    "x-mac-turkish": "mac-turkish",
    "x-mac-ce": "mac-latin2",
    "x-mac-icelandic": "mac-iceland",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-8-e": "iso-8859-8",
    "iso-8859-6-e": "iso-8859-6",
    # WHATWG: labels for Latin-1 mean windows-1252 (curly quotes in 0x80-0x9f).
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso_8859-1": "cp1252",
    "l1": "cp1252",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "sjis": "shift_jis",
    "ms932": "cp932",
    "x-euc-jp": "euc_jp",
    "big5": "big5hkscs",
    "x-unicode-2-0-utf-7": "utf-7",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "unicode": "utf-8",
    "unknown-8bit": "",
    "x-unknown": "",
    "x-user-defined": "",
    "default": "",
    "_autodetect_all": "",
}

# Declared ASCII is routinely violated; such bytes are almost always UTF-8 or cp1252.
_ASCII_NAMES = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "646", "iso646-us", "us"})


# Codecs whose encoded form is pure ASCII: the ASCII fast path must not bypass them.
_SEVEN_BIT_CODECS = ("utf-7", "utf-16", "utf-32", "iso2022", "hz")


@functools.lru_cache(maxsize=256)
def resolve_charset(name: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when it is unknown.

    ``''`` in the alias table (and ASCII labels) resolve to None as well: the caller
    then guesses UTF-8 / Latin-1, which beats the declared label.
    """
    if not name:
        return None
    label = name.strip().strip("\"'").lower()
    label = label.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    if label in _ASCII_NAMES:
        return None
    label = _ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    # Transform codecs (base64, rot13, zlib, ...) are not text encodings: an attacker
    # declaring charset=zlib must not get bytes decompressed.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode ``data`` declared as ``charset``; returns (text, defect or None)."""
    codec = resolve_charset(charset)
    if data.isascii() and (codec is None or not codec.startswith(_SEVEN_BIT_CODECS)):
        return data.decode("ascii"), None
    if codec is not None:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            return data.decode(codec, errors="replace"), f"invalid {codec} bytes replaced"
        except Exception:
            # Some codecs (utf-7, cjk) raise other errors on hostile input.
            return data.decode("latin-1"), f"charset {charset!r} failed, decoded as latin-1"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
        fallback = "cp1252"
    else:
        fallback = "utf-8"
    declared = (charset or "").strip().lower()
    if declared and declared not in _ASCII_NAMES:
        return text, f"unknown charset {charset!r}, decoded as {fallback}"
    return text, f"8-bit data in ASCII text, decoded as {fallback}"
