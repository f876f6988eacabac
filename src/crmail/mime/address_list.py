"""Address lists (From, To, Cc, ...): tokenised in one regex pass, leniently."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crmail.domain.addresses import normalize_email
from crmail.mime.header_block import clean_line, decoded
from crmail.mime.params import QUOTED_PAIR

__all__ = ["Address", "parse_address_list"]


@dataclass(frozen=True, slots=True)
class Address:
    name: str  # display name, decoded ('' when absent)
    email: str  # normalize_email()'d


_ADDR_TOKEN = re.compile(
    r"""
      (?P<quoted>"(?:[^"\\]|\\.)*"?)
    | (?P<comment>\()
    | (?P<angle><[^>]*>?)
    | (?P<sep>[,;])
    | (?P<colon>:)
    | (?P<text>[^"(<,;:]+)
    | (?P<stray>[)>])
    """,
    re.X | re.S,
)


def _skip_comment(value: str, pos: int) -> tuple[int, str]:
    """Scan a (possibly nested) comment opening at value[pos]; returns (end, content)."""
    depth = 0
    i = pos
    n = len(value)
    while i < n:
        char = value[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1, value[pos + 1 : i]
        i += 1
    return n, value[pos + 1 :]


class _MailboxBuilder:
    """Collects the tokens of one mailbox between separators."""

    __slots__ = ("angle", "comment", "phrase", "spec")

    def __init__(self) -> None:
        self.phrase: list[str] = []  # display name pieces, quotes removed
        self.spec: list[str] = []  # raw pieces, for a bare addr-spec
        self.angle: str | None = None
        self.comment: str | None = None

    def build(self, defects: list[str]) -> Address | None:
        if self.angle is not None:
            # Drop an obsolete source route: <@relay1,@relay2:user@host>.
            raw = self.angle.rsplit(":", 1)[-1]
            name = "".join(self.phrase)
        else:
            raw, name = self._bare_spec()
        if not raw.strip():
            return None
        email = normalize_email(raw)
        if email is None:
            defects.append(f"invalid address {raw.strip()[:80]!r} dropped")
            return None
        return Address(name=clean_line(decoded(name, defects)), email=email)

    def _bare_spec(self) -> tuple[str, str]:
        spec = "".join(self.spec).strip()
        words = spec.split()
        if len(words) > 1:
            # Lenient: "Alice alice@example.com" (missing <>) is common enough.
            at_words = [w for w in words if "@" in w]
            if len(at_words) == 1:
                name = " ".join(w for w in words if w is not at_words[0])
                return at_words[0], name
        return spec, self.comment or ""


def parse_address_list(
    value: str, limit: int, defects: list[str], header: str
) -> tuple[Address, ...]:
    """Tokenise an address list in one regex pass (groups, comments, quotes, junk).

    An address listed twice (often a header repeated by a relay) is kept once, at its
    first place, with the first display name given for it.
    """
    result: list[Address] = []
    index_of: dict[str, int] = {}
    current = _MailboxBuilder()
    pos = 0
    n = len(value)

    def finish() -> None:
        nonlocal current
        addr = current.build(defects)
        if addr is not None:
            seen = index_of.get(addr.email)
            if seen is None:
                index_of[addr.email] = len(result)
                result.append(addr)
            elif addr.name and not result[seen].name:
                result[seen] = addr
        current = _MailboxBuilder()

    while pos < n and len(result) < limit:
        match = _ADDR_TOKEN.match(value, pos)
        if match is None:  # unreachable: the alternatives cover every character
            break
        kind = match.lastgroup
        token = match.group()
        pos = match.end()
        if kind == "text":
            current.phrase.append(token)
            current.spec.append(token)
        elif kind == "quoted":
            inner = token[1:-1] if len(token) > 1 and token.endswith('"') else token[1:]
            current.phrase.append(QUOTED_PAIR.sub(r"\1", inner))
            current.spec.append(token)
        elif kind == "angle":
            current.angle = token[1:].rstrip(">")
        elif kind == "comment":
            pos, content = _skip_comment(value, match.start())
            if current.comment is None:
                current.comment = content
        elif kind == "sep":
            finish()
        elif kind == "colon" and current.angle is None:
            current = _MailboxBuilder()  # group "name:" -- members follow
    if pos < n:
        defects.append(f"{header}: more than {limit} addresses, rest dropped")
    else:
        finish()
    return tuple(result[:limit])
