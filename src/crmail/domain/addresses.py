"""Email address normalisation shared by every layer that compares addresses.

crmail matches addresses case-insensitively (local part included: no mail system a CRM
user meets treats ``Bob@x`` and ``bob@x`` as different people), so the normal form is the
whole address lowercased. Punycode domains are left as they are.
"""

from __future__ import annotations

import re

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
