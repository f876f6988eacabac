from __future__ import annotations

from pathlib import Path

import pytest

from tests.mime.corpus import sdist_files


@pytest.fixture(scope="session")
def talon_files() -> list[Path]:
    files = sdist_files("talon")
    assert len(files) > 30, f"talon fixtures look incomplete: {len(files)} files"
    return files


@pytest.fixture(scope="session")
def tnef_files() -> list[Path]:
    files = [p for p in sdist_files("tnefparse") if p.suffix == ".tnef"]
    assert len(files) > 10, f"tnefparse examples look incomplete: {len(files)} files"
    return files


@pytest.fixture(scope="session")
def mail_parser_files() -> list[Path]:
    files = sdist_files("mail-parser")
    assert len(files) > 20, f"mail-parser samples look incomplete: {len(files)} files"
    return files
