"""The floor under issue 14's import ratio: what SQLite alone pays, at 1M rows against
10k, for inserts into B-tree indexes keyed at random.

Two bare SQLite databases, set up as crmail's (WAL, ``synchronous=NORMAL``), each one
table of N rows with a ~1 KB payload and K indexes on random 32-hex-digit keys (crmail's
import writes six such indexes; ``tests/storage/test_import_indexes.py`` lists them).
Interleaved rounds insert 10,000 new rows into each (the small one reset each round), in transactions of 200 rows as the
sync engine's import batches are; each round prints rows/s at both sizes and the ratio,
then the median ratio for each K. No crmail code runs: this is the ratio the storage
engine itself allows for that many random-keyed indexes, the baseline for
``reads_bench.py --imap-import``'s ratio measured on the same machine.

Usage: .venv/bin/python bench/btree_floor.py [--indexes 0,2,4,6] [--rounds 4]
       [--big 1000000] [--small 10000]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _sqlite_rounds import load_average, restore

PAYLOAD = b"x" * 1000
BATCH = 200
ROUNDS_ROWS = 10_000


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _row(keys: int) -> tuple[object, ...]:
    return (*(secrets.token_hex(16) for _ in range(keys)), PAYLOAD)


def _insert(keys: int) -> str:
    names = ", ".join([*(f"k{i}" for i in range(keys)), "payload"])
    return f"INSERT INTO t ({names}) VALUES ({', '.join('?' * (keys + 1))})"


def _create(path: Path, rows: int, keys: int) -> None:
    conn = _connect(path)
    columns = "".join(f", k{i} TEXT" for i in range(keys))
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY{columns}, payload BLOB)")
    for start in range(0, rows, 50_000):
        conn.execute("BEGIN")
        conn.executemany(_insert(keys), (_row(keys) for _ in range(min(50_000, rows - start))))
        conn.execute("COMMIT")
    # Indexes built once over the rows (as a big workspace's have grown), not row by row.
    for i in range(keys):
        conn.execute(f"CREATE INDEX ix_k{i} ON t (k{i})")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _insert_rate(path: Path, keys: int) -> float:
    conn = _connect(path)
    batches = [[_row(keys) for _ in range(BATCH)] for _ in range(ROUNDS_ROWS // BATCH)]
    t = time.perf_counter()
    for batch in batches:
        conn.execute("BEGIN")
        conn.executemany(_insert(keys), batch)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - t
    conn.close()
    return ROUNDS_ROWS / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--indexes", default="0,2,4,6", help="random-keyed indexes, one run each")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    args = ap.parse_args()
    counts = [int(x) for x in args.indexes.split(",")]
    print(f"load average at start (1/5/15 min): {load_average()}")
    rates: dict[tuple[int, int], list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for keys in counts:
            for n in (args.small, args.big):
                paths[(keys, n)] = Path(tmp) / f"k{keys}-{n}.db"
                t = time.perf_counter()
                _create(paths[(keys, n)], n, keys)
                print(f"{keys} indexes, {n:,} rows: built in {time.perf_counter() - t:.1f} s")
        # The small one back to its built state each round: 10,000 rows more a round
        # would double, then triple it. The big one grows by 1% a round.
        base = {keys: Path(f"{paths[(keys, args.small)]}.base") for keys in counts}
        for keys in counts:
            shutil.copyfile(paths[(keys, args.small)], base[keys])
        for r in range(args.rounds):
            for keys in counts:
                restore(base[keys], paths[(keys, args.small)])
                small = _insert_rate(paths[(keys, args.small)], keys)
                big = _insert_rate(paths[(keys, args.big)], keys)
                rates[(keys, args.small)].append(small)
                rates[(keys, args.big)].append(big)
                print(
                    f"round {r + 1}, {keys} random-keyed indexes: {args.small:,}: {small:7.0f}"
                    f" rows/s  {args.big:,}: {big:7.0f} rows/s  ratio {big / small:.2f}",
                    flush=True,
                )
    print()
    for keys in counts:
        ratios = [
            b / s for b, s in zip(rates[(keys, args.big)], rates[(keys, args.small)], strict=True)
        ]
        print(
            f"{keys} random-keyed indexes: into {args.big:,} / into {args.small:,}:"
            f" median {statistics.median(ratios):.2f} over {len(ratios)} rounds"
            f" (range {min(ratios):.2f}-{max(ratios):.2f}); rows/s median"
            f" {statistics.median(rates[(keys, args.big)]):.0f}"
            f" vs {statistics.median(rates[(keys, args.small)]):.0f}"
        )
    print(f"\nload average at end (1/5/15 min): {load_average()}")


if __name__ == "__main__":
    main()
