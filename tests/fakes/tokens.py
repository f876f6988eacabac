"""Stands in for the OAuth layer in the provider clients' tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class GrantingFake(Protocol):
    def grant(self, token: str, address: str) -> None: ...


@dataclass
class Tokens:
    """Hands out the fake's current token and, on a forced refresh, grants a new one
    (counting refreshes)."""

    fake: GrantingFake
    address: str
    current: str
    refreshes: int = 0
    issued: list[str] = field(default_factory=list)

    async def access_token(self) -> str:
        return self.current

    async def refresh(self) -> str:
        self.refreshes += 1
        self.current = f"{self.current}-r{self.refreshes}"
        self.fake.grant(self.current, self.address)
        self.issued.append(self.current)
        return self.current
