"""Recording a token's last use is best effort: a database locked by another writer does
not fail the request the token was checked for (it used to answer 503)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, update

from crmail.api import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.models import ApiToken


@pytest.fixture
def quick_services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, secret_keys=(new_key(),), db_lock_timeout=0.3
    )
    services = Services.open(settings)
    try:
        yield services
    finally:
        services.close()


def test_a_locked_database_does_not_fail_the_request(quick_services: Services) -> None:
    services = quick_services

    def make(s):  # type: ignore[no-untyped-def]
        workspace = crm.create_workspace(s, "Acme").id
        return crm.create_user(s, workspace, "owner@acme.test")

    new = services.db.run(make)
    client = TestClient(create_app(services))
    other = create_engine(services.db.url)
    try:
        with other.connect() as held:
            # Another writer holds the token's row (PostgreSQL) or the database's write
            # lock (SQLite) past the lock timeout; readers go on.
            held.execute(update(ApiToken).values(name="held"))
            r = client.get("/api/me", headers={"Authorization": f"Bearer {new.token}"})
            assert r.status_code == 200, r.text
            held.rollback()
    finally:
        other.dispose()
    # Not recorded this time; the next use records it.
    token = services.db.run(lambda s: s.query(ApiToken).one().last_used_at)
    assert token is None
    assert client.get("/api/me", headers={"Authorization": f"Bearer {new.token}"}).is_success
    assert services.db.run(lambda s: s.query(ApiToken).one().last_used_at) is not None
