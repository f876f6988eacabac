"""The retry and import-batch rules: pure tables, no IO."""

from __future__ import annotations

import pytest

from crmail.domain.account import Backoff
from crmail.domain.batching import GROW_AFTER, BatchSize


def test_backoff_doubles_to_the_cap_and_starts_over_after_a_success() -> None:
    b = Backoff(first=1.0, cap=300.0)
    assert b.delay() == 0.0  # healthy: no wait
    waits = []
    for _ in range(12):
        b = b.failed()
        waits.append(b.delay())
    assert waits[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert waits[9:] == [300, 300, 300]
    b = b.succeeded()
    assert b.attempt == 0
    assert b.failed().delay() == 1.0  # the next blip waits the shortest time again


def test_backoff_after_many_separate_blips_stays_at_the_bottom() -> None:
    # One blip an hour over a long life: every one is followed by healthy rounds.
    b = Backoff(first=1.0, cap=300.0)
    for _ in range(100):
        b = b.failed()
        assert b.delay() == 1.0
        b = b.succeeded()


def test_backoff_jitter_only_shortens() -> None:
    b = Backoff(first=2.0, cap=60.0).failed().failed()
    assert b.delay(0.5) == 2.0 and b.delay(1.0) == 4.0


def test_backoff_survives_absurd_attempt_counts() -> None:
    assert Backoff(first=1.0, cap=300.0, attempt=10_000).delay() == 300.0


def test_batch_halves_on_failure_down_to_one() -> None:
    b = BatchSize(200)
    sizes = []
    for _ in range(10):
        b = b.failed()
        sizes.append(b.current)
    assert sizes == [100, 50, 25, 12, 6, 3, 1, 1, 1, 1]


def test_batch_grows_back_after_successes_up_to_its_limit() -> None:
    b = BatchSize(200, current=1)
    seen = [b.current]
    for _ in range(GROW_AFTER * 10):
        b = b.committed()
        seen.append(b.current)
    assert seen == sorted(seen)
    assert seen[-1] == 200 and max(seen) == 200
    # not at once: a slice that just failed is not retried at full size right away
    assert seen[1] == 1 or GROW_AFTER == 1


def test_batch_failure_resets_the_streak() -> None:
    b = BatchSize(8, current=2)
    for _ in range(GROW_AFTER - 1):
        b = b.committed()
    b = b.failed()
    assert b.current == 1
    for _ in range(GROW_AFTER - 1):
        b = b.committed()
    assert b.current == 1  # the streak started over


def test_batch_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        BatchSize(0)
