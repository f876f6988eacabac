"""Failure limiting: a sliding window of failed attempts per key (an IP, an address, a user).

Shared by the shells: the web sign-in counts failures per client IP and per account, and
a password change (API and web) counts wrong current passwords per user, so a stolen
token or session cannot be used to guess the password.

In memory, per process: enough for the single-process `crmail run`; several processes
behind a load balancer each keep their own count (the limit multiplies by their number).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(
        self,
        max_failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, key: str) -> int | None:
        """Seconds until another attempt is allowed, or None when allowed now."""
        with self._lock:
            now = self._clock()
            q = self._recent(key, now)
            if len(q) < self.max_failures:
                if not q:
                    self._failures.pop(key, None)  # keep the table small
                return None
            return max(1, int(q[0] + self.window - now) + 1)

    def failed(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
