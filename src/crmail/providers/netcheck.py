"""Resolving a server's name under the address policy (:mod:`crmail.domain.netpolicy`).

Every address the name resolves to must pass, not just the first: a name that resolves to
a public and a private address would otherwise be one retry away from the private one.
Callers then connect to a returned address itself (keeping the name for TLS), so a second
DNS answer cannot swap in an internal address between the check and the connection (DNS
rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from crmail.domain.netpolicy import AddressPolicy, ip_literal
from crmail.errors import AddressNotAllowed, ConnectFailed, TLSFailed

T = TypeVar("T")

POLICY_HINT = (
    "crmail connects only to servers on public addresses. For a self-hosted server on a "
    "private network, the operator can allow it with CRMAIL_MAIL_ALLOWED_NETWORKS."
)


async def allowed_addresses(
    host: str, port: int, policy: AddressPolicy, *, hint: str = POLICY_HINT
) -> list[str]:
    """The addresses to connect to for ``host``; every one passed ``policy``.

    Raises :class:`AddressNotAllowed` when one does not, :class:`ConnectFailed` when the
    name does not resolve.
    """
    literal = ip_literal(host)
    if literal is not None:
        addrs = [str(literal)]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise ConnectFailed(f"cannot resolve {host}: {exc}") from exc
        addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addrs:
            raise ConnectFailed(f"{host} has no address")
    for a in addrs:
        if not policy.allows(ipaddress.ip_address(a)):
            raise AddressNotAllowed(
                f"{host} is at {a}, a loopback, private or reserved address", hint=hint
            )
    return addrs


async def first_answering(addresses: Sequence[str], connect: Callable[[str], Awaitable[T]]) -> T:
    """``connect`` to each checked address in turn until one answers, like the resolver's
    own loop: a :class:`ConnectFailed` moves on to the next address (the last one's is
    raised); a TLS failure or any other error is the server's answer and is raised at once.
    """
    for address in addresses[:-1]:
        try:
            return await connect(address)
        except TLSFailed:
            raise
        except ConnectFailed:
            continue
    return await connect(addresses[-1])
