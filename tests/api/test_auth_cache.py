"""The token→user cache: it saves the token's statements, and never outlives a revocation
made in this process, a disabled user, a lookup racing a revocation, or the token's expiry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from crmail.storage import auth_cache
from crmail.storage.models import User, utcnow
from crmail.storage.tokens import Checked
from tests.api.conftest import World

pytestmark = pytest.mark.db


@contextmanager
def token_reads(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def grab(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "api_tokens" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = world.services.db.engine
    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def test_a_recently_checked_token_is_not_read_again(world: World) -> None:
    c, owner = world.client, world.owner
    auth_cache.invalidate()
    with token_reads(world) as first:
        assert c.get("/api/me", headers=owner.headers).status_code == 200
    with token_reads(world) as second:
        assert c.get("/api/me", headers=owner.headers).status_code == 200
    assert len(first) == 1 and second == []


def test_a_revoked_token_is_refused_at_once_despite_the_cache(world: World) -> None:
    c, owner = world.client, world.owner
    made = c.post("/api/me/tokens", json={"name": "ci"}, headers=owner.headers).json()
    bearer = {"Authorization": f"Bearer {made['token']}"}
    assert c.get("/api/me", headers=bearer).status_code == 200  # now cached
    assert c.delete(f"/api/me/tokens/{made['id']}", headers=owner.headers).status_code == 204
    refused = c.get("/api/me", headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "token revoked"


def test_a_disabled_user_is_refused_at_once_despite_the_cache(world: World) -> None:
    c, mate = world.client, world.teammate
    assert c.get("/api/me", headers=mate.headers).status_code == 200  # now cached
    world.services.db.run(
        lambda s: s.execute(update(User).where(User.id == mate.id).values(disabled_at=utcnow()))
    )
    assert c.get("/api/me", headers=mate.headers).status_code == 401


def test_a_lookup_that_raced_a_revocation_is_not_remembered() -> None:
    started = auth_cache.generation()
    auth_cache.invalidate()  # a revocation committed while the lookup ran
    auth_cache.put("db", "crm_raced", object(), Checked(1, 1, False), started)
    assert auth_cache.get("db", "crm_raced") is None


def test_an_entry_does_not_outlive_its_token() -> None:
    expired = Checked(1, 1, False, utcnow() - timedelta(seconds=1))
    auth_cache.put("db", "crm_expired", object(), expired, auth_cache.generation())
    assert auth_cache.get("db", "crm_expired") is None
    live = Checked(1, 1, False, utcnow() + timedelta(days=1))
    auth_cache.put("db", "crm_live", object(), live, auth_cache.generation())
    assert auth_cache.get("db", "crm_live") is not None
