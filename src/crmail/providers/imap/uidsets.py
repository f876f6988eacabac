"""IMAP UID sets: compact ``1:5,7`` text, and chunks that keep command lines short."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: Keep command lines under this many bytes (servers commonly cap at 8 KiB+).
MAX_SET_CHARS = 7000
#: Messages per FETCH command: bounds memory per round trip without costing
#: throughput (one round trip per chunk is negligible next to the data).
FETCH_CHUNK = 500


def _runs(uids: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(set(uids))
    if not ordered:
        return
    start = prev = ordered[0]
    for u in ordered[1:]:
        if u == prev + 1:
            prev = u
            continue
        yield start, prev
        start = prev = u
    yield start, prev


def _run_text(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}:{b}"


def uid_set(uids: Iterable[int]) -> str:
    """Compact IMAP sequence set: ``[1,2,3,4,5,7,9,10]`` -> ``"1:5,7,9:10"``."""
    text = ",".join(_run_text(a, b) for a, b in _runs(uids))
    if not text:
        raise ValueError("empty uid set")
    return text


def parse_uid_set(text: str | bytes) -> list[int]:
    """Expand ``1:3,7`` to ``[1, 2, 3, 7]`` (in the given order; ``a:b`` may be reversed)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        a, sep, b = part.partition(":")
        if sep:
            lo, hi = int(a), int(b)
            step = 1 if hi >= lo else -1
            out.extend(range(lo, hi + step, step))
        else:
            out.append(int(a))
    return out


def uid_set_chunks(
    uids: Iterable[int], *, max_count: int = FETCH_CHUNK, max_chars: int = MAX_SET_CHARS
) -> Iterator[tuple[str, int]]:
    """Split uids into compact sets of at most ``max_count`` uids / ``max_chars`` chars.

    Yields ``(set_text, count)``.
    """
    parts: list[str] = []
    chars = count = 0
    for a, b in _runs(uids):
        while a <= b:
            take = min(b - a + 1, max_count - count)
            text = _run_text(a, a + take - 1)
            if parts and chars + len(text) + 1 > max_chars:
                yield ",".join(parts), count
                parts, chars, count = [], 0, 0
                continue
            parts.append(text)
            chars += len(text) + 1
            count += take
            a += take
            if count >= max_count:
                yield ",".join(parts), count
                parts, chars, count = [], 0, 0
    if parts:
        yield ",".join(parts), count
