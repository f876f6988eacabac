"""How many messages an import slice takes: fewer after a failure, more after successes.

A slice is one transaction. A slice that keeps failing (a connection that drops before a
large slice arrives, a write that cannot commit) is halved on every failure, down to a
single message, so the import still moves; committed slices grow it back to the
configured size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: committed slices in a row before the size doubles again
GROW_AFTER = 2


@dataclass(frozen=True, slots=True)
class BatchSize:
    limit: int
    current: int = 0
    #: committed slices since the size last changed
    streak: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a batch holds at least one message")
        if self.current == 0:
            object.__setattr__(self, "current", self.limit)

    def failed(self) -> BatchSize:
        return replace(self, current=max(1, self.current // 2), streak=0)

    def committed(self) -> BatchSize:
        if self.current >= self.limit:
            return self if self.streak == 0 else replace(self, streak=0)
        if self.streak + 1 < GROW_AFTER:
            return replace(self, streak=self.streak + 1)
        return replace(self, current=min(self.limit, self.current * 2), streak=0)
