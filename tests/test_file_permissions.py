"""What crmail writes to disk is its owner's alone, whatever the umask: the data dir 0700,
the SQLite database and its WAL/shared-memory files and the secret key 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmail.config import Settings
from crmail.crypto import SecretKeyError, new_key
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.files import sqlite_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual shell umask: new files 0644, dirs 0755
    try:
        yield
    finally:
        os.umask(old)


def test_new_data_dir_database_wal_and_key_are_private(
    tmp_path: Path, permissive_umask: None
) -> None:
    data = tmp_path / "data"
    services = Services.open(Settings(data_dir=data))  # no key given: one is made in data/
    try:
        services.db.run(lambda s: crm.create_workspace(s, "Acme"))
        db = services.settings.sqlite_path
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        assert all(f.exists() for f in files), list(data.iterdir())
        assert mode(data) == 0o700
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(data / "secret.key") == 0o600
    finally:
        services.close()


def test_existing_world_readable_files_are_tightened_at_open(
    tmp_path: Path, permissive_umask: None
) -> None:
    settings = Settings(data_dir=tmp_path, secret_keys=(new_key(),))
    Services.open(settings).close()
    db = settings.sqlite_path
    leftovers = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for f in leftovers:  # as an older crmail (or a copy) left them
        f.touch()
        f.chmod(0o644)
    services = Services.open(settings)
    services.close()
    assert {f.name: mode(f) for f in leftovers if f.exists()} == {
        f.name: 0o600 for f in leftovers if f.exists()
    }
    assert mode(db) == 0o600


def test_postgres_urls_and_memory_databases_touch_no_file() -> None:
    assert sqlite_file("postgresql+psycopg://crm@db/crmail") is None
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("sqlite:////srv/crmail/crmail.db") == Path("/srv/crmail/crmail.db")


def test_an_empty_key_file_is_refused_in_words_not_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("")  # what a first start cut short used to leave
    with pytest.raises(SecretKeyError, match="is empty") as refused:
        Settings(data_dir=data).ensure_secret_key()
    assert refused.value.hint and "delete it" in refused.value.hint


def test_a_later_start_reads_the_key_the_first_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = {Settings(data_dir=data).ensure_secret_key().secret_keys for _ in range(3)}
    assert len(keys) == 1
    assert [p.name for p in data.iterdir()] == ["secret.key"]  # no spare left beside it
