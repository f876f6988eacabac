"""MIME header parameters: ``type/subtype; name=value; name*=charset''text`` (RFC 2045,
RFC 2231)."""

from __future__ import annotations

import re
import urllib.parse

from crmail.mime.charsets import decode_bytes
from crmail.mime.header_block import clean_line

__all__ = ["QUOTED_PAIR", "parse_params"]

# The main value ends at ";" or at whitespace: a folded "multipart/mixed\r\n\tboundary=x"
# whose ";" was forgotten (seen from several mailers) still yields its boundary.
_MAIN = re.compile(r'\s*([^;\s"]*)')
_PARAM = re.compile(r'[;\s]\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.S)
QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_MAX_PARAM_SECTIONS = 64


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith('"'):
        value = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
        return QUOTED_PAIR.sub(r"\1", value)
    return value


def _join_rfc2231(sections: dict[int, tuple[str, bool]], defects: list[str]) -> str:
    """Join name*0*=, name*1= ... sections and decode the charset'lang' prefix."""
    charset: str | None = None
    data = bytearray()
    for position, index in enumerate(sorted(sections)[:_MAX_PARAM_SECTIONS]):
        value, encoded = sections[index]
        if encoded:
            if position == 0 and value.count("'") >= 2:
                charset, _language, value = value.split("'", 2)
            data += urllib.parse.unquote_to_bytes(value)
        else:
            data += value.encode("utf-8", errors="replace")
    text, defect = decode_bytes(bytes(data), charset or "utf-8")
    if defect:
        defects.append(defect)
    return text


def parse_params(value: str, defects: list[str]) -> tuple[str, dict[str, str]]:
    """Split "main; a=b; c*=utf-8''x" into (lowercased main value, params)."""
    main = _MAIN.match(value)
    assert main is not None  # the pattern matches the empty string
    rest = value[main.end() :]
    if rest and not rest[:1].isspace() and rest[:1] != ";":
        # Junk glued to the main value ('text/plain"x'): keep it in the main value, which
        # the caller then rejects as a type, as it always did.
        head, _, rest = value.partition(";")
        main_value = head
        rest = ";" + rest if rest or value.endswith(";") else ""
    else:
        main_value = main.group(1)
    params: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[str, bool]]] = {}
    for match in _PARAM.finditer(rest):
        key = match.group(1).lower()
        raw = match.group(2)
        if "*" not in key:
            params.setdefault(key, _unquote(raw))
            continue
        base, _, suffix = key.partition("*")
        encoded = suffix == "" or suffix.endswith("*")
        number = suffix.rstrip("*")
        index = int(number) if number.isdigit() and len(number) < 4 else 0
        extended.setdefault(base, {})[index] = (_unquote(raw), encoded)
    for base, sections in extended.items():
        params[base] = _join_rfc2231(sections, defects)  # extended form wins
    return clean_line(main_value).lower(), params
