"""Sign-in rate limiting: a sliding window of failures per (client IP, email).

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
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, key: tuple[str, str]) -> int | None:
        """Seconds until another attempt is allowed, or None when allowed now."""
        with self._lock:
            now = self._clock()
            q = self._recent(key, now)
            if len(q) < self.max_failures:
                if not q:
                    self._failures.pop(key, None)  # keep the table small
                return None
            return max(1, int(q[0] + self.window - now) + 1)

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._recent(key, self._clock()).append(self._clock())

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)
