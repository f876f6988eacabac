"""Real-world mail corpora for the mime tests: CPython's test_email data and the
fixtures shipped in the PyPI sdists of talon (Apache-2.0), tnefparse (LGPL-3.0, read as
data only) and mail-parser (Apache-2.0: spam, malware and malformed mail collected by
SpamScope).

The sdists are fetched once with pip into ``<repo>/.cache/corpus/`` and reused. A failed
download is a test failure, not a skip: CI has registry access, and a silently skipped
corpus would hide regressions.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "corpus"

SDISTS = {
    "talon": ("1.4.4", "tests/fixtures/"),
    "tnefparse": ("1.4.0", "tests/examples/"),
    "mail-parser": ("4.8.0", "tests/mails/"),
}


def cpython_email_data() -> Path:
    """CPython's Lib/test/test_email/data of the running interpreter."""
    path = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
    if not path.is_dir():
        pytest.fail(f"CPython test_email data not found at {path} (stdlib 'test' package missing)")
    return path


def _dist(name: str, version: str) -> str:
    """The sdist's file and folder name (PEP 625: "mail-parser" becomes "mail_parser")."""
    return f"{name.replace('-', '_')}-{version}"


def _download(name: str, version: str) -> Path:
    archive = CACHE_DIR / f"{_dist(name, version)}.tar.gz"
    if archive.is_file():
        return archive
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
        f"{name}=={version}", "-d", str(CACHE_DIR),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or not archive.is_file():
        pytest.fail(
            f"could not download the {name}=={version} sdist for the mail corpus "
            f"(exit {result.returncode}):\n{result.stderr[-2000:]}",
            pytrace=False,
        )
    return archive


def sdist_files(name: str) -> list[Path]:
    """Download (once) and extract the fixture directory of an sdist; its files, sorted."""
    version, fixtures = SDISTS[name]
    root = CACHE_DIR / _dist(name, version)
    marker = root / ".extracted"
    if not marker.is_file():
        archive = _download(name, version)
        prefix = f"{_dist(name, version)}/{fixtures}"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)]
            tar.extractall(CACHE_DIR, members=members, filter="data")
        marker.write_text("ok\n")
    return sorted(p for p in (root / fixtures).rglob("*") if p.is_file())
