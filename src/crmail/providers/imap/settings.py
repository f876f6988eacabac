"""What an IMAP account's connection needs, and opening it under the address policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import InvalidInput
from crmail.providers.imap.connection import ImapConnection, Security
from crmail.providers.netcheck import allowed_addresses, first_answering
from crmail.providers.tls import client_context


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"
    username: str
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0
    #: Capabilities to pretend the server lacks (tests of fallbacks, buggy servers).
    disabled_caps: frozenset[str] = frozenset()
    #: where the server may be (SSRF guard): checked on every connect, and the checked
    #: address is the one connected to; None for servers the operator chose (tests, CLI)
    address_policy: AddressPolicy | None = None


async def open_connection(s: ImapSettings) -> ImapConnection:
    """A connection to the server of ``s``, TLS set up as it asks, not logged in yet."""
    if s.security not in ("tls", "starttls", "none"):
        raise InvalidInput(f"unknown IMAP security {s.security!r}")
    security = cast(Security, s.security)
    # Shared by every connection with the same trust (built once, off the loop).
    ctx = await client_context(s.ca_file) if security != "none" else None
    if s.address_policy is None:
        return await ImapConnection.open(s.host, s.port, security, ctx, s.timeout)
    addresses = await allowed_addresses(s.host, s.port, s.address_policy)
    return await first_answering(
        addresses,
        lambda address: ImapConnection.open(
            s.host, s.port, security, ctx, s.timeout, address=address
        ),
    )
