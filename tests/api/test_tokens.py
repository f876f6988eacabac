"""API tokens end to end: made, used, listed, rotated, revoked, expired; users disabled."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmail.storage import tokens
from crmail.storage.models import ApiToken, User, utcnow
from tests.api.conftest import Actor, World


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(resp) -> str:  # type: ignore[no-untyped-def]
    return str(resp.json()["error"]["message"])


def _set(world: World, token_id: int, **values: object) -> None:
    world.services.db.run(
        lambda s: s.execute(update(ApiToken).where(ApiToken.id == token_id).values(**values))
    )


def _row(world: World, token_id: int) -> ApiToken:
    def load(s: Session) -> ApiToken:
        row = s.get_one(ApiToken, token_id)
        s.expunge(row)
        return row

    return world.services.db.run(load)


def test_token_lifecycle(world: World) -> None:
    c, owner = world.client, world.owner
    made = c.post("/api/me/tokens", json={"name": "  CI   deploy "}, headers=owner.headers)
    assert made.status_code == 201
    new = made.json()
    secret = new["token"]
    assert secret.startswith("crm_") and new["prefix"] == secret[:8]
    assert (new["name"], new["state"], new["expires_at"], new["last_used_at"]) == (
        "CI deploy",
        "active",
        None,
        None,
    )

    # the new token works, and its first use is recorded
    assert c.get("/api/me", headers=_bearer(secret)).json()["id"] == owner.id
    listed = c.get("/api/me/tokens", headers=owner.headers).json()
    assert [t["name"] for t in listed] == ["initial", "CI deploy"]
    assert "token" not in listed[1]  # the secret is never shown again
    assert listed[1]["last_used_at"] is not None

    # only its hash is stored
    row = _row(world, new["id"])
    assert row.token_hash == tokens.digest(secret) and secret not in row.token_hash

    # rotate: the old one stops, the new one (same name) works
    rotated = c.post(f"/api/me/tokens/{new['id']}/rotate", headers=owner.headers)
    assert rotated.status_code == 201
    fresh = rotated.json()["token"]
    assert rotated.json()["name"] == "CI deploy" and fresh != secret
    old = c.get("/api/me", headers=_bearer(secret))
    assert (old.status_code, _error(old)) == (401, "token revoked")
    assert c.get("/api/me", headers=_bearer(fresh)).status_code == 200

    # revoke
    gone = c.delete(f"/api/me/tokens/{rotated.json()['id']}", headers=owner.headers)
    assert gone.status_code == 204
    refused = c.get("/api/me", headers=_bearer(fresh))
    assert (refused.status_code, _error(refused)) == (401, "token revoked")
    assert refused.json()["error"]["code"] == "unauthenticated"
    states = {t["id"]: t["state"] for t in c.get("/api/me/tokens", headers=owner.headers).json()}
    assert states[new["id"]] == states[rotated.json()["id"]] == "revoked"
    # the owner's other token was not touched
    assert c.get("/api/me", headers=owner.headers).status_code == 200


def test_an_expired_token_is_refused_and_says_so(world: World) -> None:
    c = world.client
    made = c.post(
        "/api/me/tokens", json={"name": "short", "expires_in_days": 1}, headers=world.owner.headers
    ).json()
    expires = made["expires_at"]
    assert expires is not None
    assert c.get("/api/me", headers=_bearer(made["token"])).status_code == 200
    _set(world, made["id"], expires_at=utcnow() - timedelta(seconds=1))
    resp = c.get("/api/me", headers=_bearer(made["token"]))
    assert (resp.status_code, _error(resp)) == (401, "token expired")
    listed = c.get("/api/me/tokens", headers=world.owner.headers).json()
    assert [t["state"] for t in listed if t["id"] == made["id"]] == ["expired"]


def test_rotation_keeps_the_lifetime_not_the_date(world: World) -> None:
    c, h = world.client, world.owner.headers
    made = c.post("/api/me/tokens", json={"name": "n", "expires_in_days": 30}, headers=h).json()
    _set(world, made["id"], created_at=utcnow() - timedelta(days=20))
    _set(world, made["id"], expires_at=utcnow() + timedelta(days=10))
    rotated = c.post(f"/api/me/tokens/{made['id']}/rotate", headers=h).json()
    row = _row(world, rotated["id"])
    assert row.expires_at is not None
    assert timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)
    again = c.post(f"/api/me/tokens/{made['id']}/rotate", headers=h)
    assert again.status_code == 422  # a revoked token is not rotated back to life


def test_last_use_is_written_at_most_once_a_minute(world: World) -> None:
    c = world.client
    made = c.post("/api/me/tokens", json={"name": "n"}, headers=world.owner.headers).json()
    c.get("/api/me", headers=_bearer(made["token"]))
    first = _row(world, made["id"]).last_used_at
    assert first is not None
    c.get("/api/me", headers=_bearer(made["token"]))
    assert _row(world, made["id"]).last_used_at == first
    _set(world, made["id"], last_used_at=first - timedelta(minutes=2))
    c.get("/api/me", headers=_bearer(made["token"]))
    later = _row(world, made["id"]).last_used_at
    assert later is not None and later >= first


def test_bad_token_input_is_a_422(world: World) -> None:
    c, h = world.client, world.owner.headers
    for body in (
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "n", "expires_in_days": 0},
        {"name": "n", "expires_in_days": 100000},
        {"name": "n", "scope": "all"},
    ):
        resp = c.post("/api/me/tokens", json=body, headers=h)
        assert resp.status_code == 422, body
        assert resp.json()["error"]["code"] == "invalid_input"


def test_a_teammate_neither_sees_nor_revokes_my_tokens(world: World) -> None:
    c = world.client
    mine = c.post("/api/me/tokens", json={"name": "mine"}, headers=world.owner.headers).json()
    for actor in (world.teammate, world.admin):
        names = [t["name"] for t in c.get("/api/me/tokens", headers=actor.headers).json()]
        assert names == ["initial"]
        assert c.delete(f"/api/me/tokens/{mine['id']}", headers=actor.headers).status_code == 404
        assert (
            c.post(f"/api/me/tokens/{mine['id']}/rotate", headers=actor.headers).status_code == 404
        )
    assert c.get("/api/me", headers=_bearer(mine["token"])).status_code == 200


def _live_tokens(world: World, actor: Actor) -> int:
    return len(
        world.services.db.run(
            lambda s: list(
                s.scalars(
                    select(ApiToken.id).where(
                        ApiToken.user_id == actor.id, ApiToken.revoked_at.is_(None)
                    )
                )
            )
        )
    )


def test_a_disabled_user_is_refused_and_stays_refused_after_enabling(world: World) -> None:
    c, mate = world.client, world.teammate
    extra = c.post("/api/me/tokens", json={"name": "x"}, headers=mate.headers).json()["token"]
    resp = c.post(f"/api/users/{mate.id}/disable", headers=world.admin.headers)
    assert resp.status_code == 200 and resp.json()["disabled"] is True
    for token in (mate.token, extra):
        refused = c.get("/api/me", headers=_bearer(token))
        assert refused.status_code == 401
    assert _live_tokens(world, mate) == 0
    users = {u["id"]: u for u in c.get("/api/users", headers=world.admin.headers).json()}
    assert users[mate.id]["disabled"] is True and users[world.owner.id]["disabled"] is False

    # the member cannot enable themselves (a token of theirs is dead anyway), nor can a member
    assert c.post(f"/api/users/{mate.id}/enable", headers=world.owner.headers).status_code == 403
    assert c.post(f"/api/users/{mate.id}/enable", headers=world.admin.headers).status_code == 200
    # enabled again, but the revoked tokens stay revoked: a leaked one must not come back
    refused = c.get("/api/me", headers=mate.headers)
    assert (refused.status_code, _error(refused)) == (401, "token revoked")


def test_a_disabled_users_new_token_is_refused_as_disabled(world: World) -> None:
    # An operator may issue a token to a disabled user; it still does not work.
    mate = world.teammate
    world.client.post(f"/api/users/{mate.id}/disable", headers=world.admin.headers)
    secret = world.services.db.run(lambda s: tokens.issue(s, mate.id, "later").secret)
    refused = world.client.get("/api/me", headers=_bearer(secret))
    assert (refused.status_code, _error(refused)) == (401, "user disabled")


def test_the_last_admin_cannot_be_disabled(world: World) -> None:
    c, admin = world.client, world.admin
    resp = c.post(f"/api/users/{admin.id}/disable", headers=admin.headers)
    assert resp.status_code == 409
    assert c.get("/api/me", headers=admin.headers).status_code == 200
    # another workspace's admin does not even see this user
    assert c.post(f"/api/users/{admin.id}/disable", headers=world.other.headers).status_code == 404
    # with a second admin, an admin may step down
    world.services.db.run(
        lambda s: s.execute(update(User).where(User.id == world.owner.id).values(role="admin"))
    )
    assert c.post(f"/api/users/{admin.id}/disable", headers=admin.headers).status_code == 200
    assert c.get("/api/me", headers=admin.headers).status_code == 401


def test_a_member_cannot_list_or_disable_users(world: World) -> None:
    c = world.client
    assert c.get("/api/users", headers=world.owner.headers).json()["error"]["code"] == "forbidden"
    resp = c.post(f"/api/users/{world.teammate.id}/disable", headers=world.owner.headers)
    assert resp.status_code == 403
    assert c.get("/api/me", headers=world.teammate.headers).status_code == 200
