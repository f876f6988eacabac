"""Which network addresses crmail may open connections to on a user's behalf.

crmail connects where its users tell it to: webhook endpoints (set by workspace admins)
and mail servers (set by any member connecting a mailbox). Without a rule, either is a
way to reach the host's own network (SSRF): the loopback interface, a cloud metadata
service, the office LAN. The rule is one for both: public addresses only, unless the
operator allows more (loopback for local development, the networks of self-hosted mail
servers). Resolving names and connecting is the callers' job
(:mod:`crmail.providers.netcheck`); this module only judges addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    #: loopback addresses (127.0.0.0/8, ::1) are allowed: local development and tests
    allow_loopback: bool = False
    #: networks allowed besides public addresses (self-hosted servers on a private LAN)
    allowed_networks: tuple[IPNetwork, ...] = ()

    def allows(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(ip in net for net in self.allowed_networks):
            return True
        if ip.is_loopback:
            return self.allow_loopback
        # is_global is False for private, link-local (cloud metadata 169.254.169.254),
        # shared (100.64/10), reserved, unspecified and documentation ranges.
        return ip.is_global and not ip.is_multicast

    def refuses_host(self, host: str) -> bool:
        """True when ``host`` is an address, or a name of this machine, that is refused.

        Other names are judged once resolved, when connecting (a name can change).
        """
        ip = ip_literal(host)
        if ip is None and is_loopback_name(host):
            ip = ipaddress.IPv4Address("127.0.0.1")
        return ip is not None and not self.allows(ip)


def parse_networks(text: str, *, setting: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR networks (``10.0.0.0/8, 192.0.2.7, ::1``).

    Raises ValueError naming ``setting`` for anything that is not one.
    """
    out: list[IPNetwork] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{setting}: {item!r} is not an IP address or network (like 10.0.0.0/8)"
            ) from None
    return tuple(out)


def ip_literal(host: str) -> IPAddress | None:
    """The address when ``host`` is written as one (``[::1]`` included), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback_name(host: str) -> bool:
    """Names that always mean this machine (RFC 6761), whatever DNS says."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")
