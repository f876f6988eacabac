"""Email address normalisation shared by every layer that compares addresses.

crmail matches addresses case-insensitively (local part included: no mail system a CRM
user meets treats ``Bob@x`` and ``bob@x`` as different people), so the normal form is the
whole address lowercased. Punycode domains are left as they are.
"""

from __future__ import annotations

import re

from crmail.errors import InvalidInput

# Any whitespace or control character makes an address implausible: it is then almost
# certainly a display name or header garbage that leaked into the address slot.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
#: RFC 5321 4.5.3.1.3: a path holds at most 256 octets, brackets included
MAX_ADDRESS = 254


def normalize_email(raw: str) -> str | None:
    """Return the normal form of ``raw``, or None when it is not a plausible addr-spec.

    Plausible means: at most 254 characters, exactly one ``@``, non-empty local and
    domain parts, no whitespace or control characters. Surrounding ``<>`` and whitespace are removed first.
    """
    addr = raw.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    if len(addr) > MAX_ADDRESS or addr.count("@") != 1 or _BAD_CHARS.search(addr):
        return None
    local, _, domain = addr.partition("@")
    if not local or not domain or "<" in addr or ">" in addr:
        return None
    return addr.lower()


def email_domain(addr: str) -> str:
    """Domain part of an address (lowercased); '' when there is no ``@``."""
    _, sep, domain = addr.rpartition("@")
    return domain.strip().rstrip(">").lower() if sep else ""


# RFC 5322 atext, plus any printable non-ASCII character (RFC 6531 UTF8-non-ascii).
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
#: RFC 5321 4.5.3.1.1: a local part holds at most 64 octets
MAX_LOCAL_PART = 64


def sendable_address(raw: str, field: str = "") -> str:
    """The one grammar for an address crmail writes in a header and gives SMTP.

    Returns the addr-spec in normal form (lowercased, the domain in its ASCII/punycode
    form) or raises :class:`InvalidInput` naming ``raw``. Stricter than
    :func:`normalize_email`, which must accept whatever arrives: the local part is a
    dot-atom (no quoted strings, so no commas, quotes, spaces or brackets that could
    make a header and the SMTP envelope disagree) and holds no ``=?`` (mail software
    that wrongly decodes RFC 2047 inside addresses could turn it into a line break);
    the domain is a host name. Surrounding ``<>`` and whitespace are removed first.
    """
    where = f"{field}: " if field else ""
    normal = normalize_email(raw)
    if normal is None:
        raise InvalidInput(f"{where}{raw!r} is not a valid email address.")
    local, _, domain = normal.partition("@")
    if not _is_dot_atom(local) or len(local.encode()) > MAX_LOCAL_PART:
        raise InvalidInput(
            f"{where}{raw!r} is not an email address crmail can send to: the part before "
            "the @ may only hold letters, digits, dots and !#$%&'*+-/=?^_`{|}~.",
        )
    if "=?" in local:
        raise InvalidInput(
            f"{where}{raw!r} looks like an encoded header word, not an email address."
        )
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        raise InvalidInput(f"{where}{raw!r} has an invalid domain name.")
    return f"{local}@{ascii_domain}"


def _is_dot_atom(text: str) -> bool:
    atoms = text.split(".")
    return all(atoms) and all(
        all(c in _ATEXT or (not c.isascii() and c.isprintable()) for c in atom) for atom in atoms
    )


def _ascii_domain(domain: str) -> str | None:
    """The domain as SMTP and 7-bit headers carry it (U-labels punycoded), or None."""
    try:
        ascii_form = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_form.split(".")
    if len(ascii_form) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_form
