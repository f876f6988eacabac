"""What the interleaved SQLite benches share (reads_bench.py's import rounds,
btree_floor.py): a small database put back to its saved copy before a round, and the
machine's load average printed beside the figures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def restore(base: Path, db_file: Path) -> None:
    """``db_file`` back to the copy ``base``, its WAL and shared-memory files gone."""
    for leftover in (Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(base, db_file)
    # Written out now, or the round's first checkpoint (which syncs the file) would pay
    # for writing the whole copy to disk.
    with db_file.open("rb+") as copied:
        os.fsync(copied.fileno())


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
