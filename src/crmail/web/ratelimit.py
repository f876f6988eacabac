"""Sign-in rate limiting: sliding windows of failures per client IP and per account.

Two counts, because a password guesser moves along one axis or the other: one password
tried against many addresses (stopped by the client's IP count), or one address tried
from many IPs (stopped by the address's count). The client IP is the connection's peer,
or what a trusted proxy says it is (``CRMAIL_TRUSTED_PROXIES``); a forwarded-for header
from anyone else changes nothing.

In memory, per process: enough for the single-process `crmail run`; several processes
behind a load balancer each keep their own count (the limit multiplies by their number).
"""

from __future__ import annotations

from dataclasses import dataclass

from crmail.ratelimit import FailureLimiter


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after: int
    #: what is being limited, for the message: "this address" or "your network"
    what: str


class SignInLimiter:
    """Both counts of the sign-in form."""

    def __init__(
        self,
        per_ip: FailureLimiter | None = None,
        per_account: FailureLimiter | None = None,
    ) -> None:
        # An office behind one NAT address shares the IP count: it allows a few people's
        # typos at once; one address gets the classic handful of tries.
        self.per_ip = per_ip or FailureLimiter(max_failures=20, window=300.0)
        self.per_account = per_account or FailureLimiter(max_failures=5, window=300.0)

    def blocked(self, ip: str, account: str) -> Blocked | None:
        wait = self.per_account.retry_after(account)
        if wait is not None:
            return Blocked(wait, "this address")
        wait = self.per_ip.retry_after(ip)
        if wait is not None:
            return Blocked(wait, "your network")
        return None

    def failed(self, ip: str, account: str) -> None:
        self.per_ip.failed(ip)
        self.per_account.failed(account)

    def succeeded(self, ip: str, account: str) -> None:
        # The IP's count stays: signing in to one's own account between guesses must not
        # reset the count of a client trying a password across other addresses.
        self.per_account.succeeded(account)
