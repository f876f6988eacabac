"""Contacts, leads and deals through the API: CRUD, validation, uniqueness, errors' shape."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.db_fixtures import database_bytes


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Every error has the one shape: {"error": {"code", "message", "hint"?}}."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "hint"}
    err: dict[str, Any] = body["error"]
    return err


def test_me(world: World) -> None:
    r = world.client.get("/api/me", headers=world.admin.headers)
    assert r.status_code == 200
    assert r.json() == {
        "id": world.admin.id,
        "workspace_id": world.admin.workspace_id,
        "email": "boss@acme.test",
        "name": "boss",
        "role": "admin",
    }


def test_healthz_needs_no_token(world: World) -> None:
    r = world.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "garbage"},
    ],
)
def test_missing_or_wrong_token_is_401(world: World, headers: dict[str, str]) -> None:
    assert_error(world.client.get("/api/contacts", headers=headers), 401, "unauthenticated")


def test_token_is_stored_hashed(world: World) -> None:
    raw = database_bytes(world.services)
    assert world.owner.token.encode() not in raw


def test_contact_crud(world: World) -> None:
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "Initech"}, headers=h).json()
    r = c.post(
        "/api/contacts",
        json={
            "name": "Ann",
            "emails": [" Ann@Example.COM ", "ann@example.com", "a2@x.test"],
            "lead_id": lead["id"],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    ann = r.json()
    # normalized, deduplicated, order kept (the first is the primary address)
    assert ann["emails"] == ["ann@example.com", "a2@x.test"]
    assert ann["lead_id"] == lead["id"]

    assert c.get(f"/api/contacts/{ann['id']}", headers=h).json() == ann
    assert c.get(f"/api/leads/{lead['id']}", headers=h).json()["contact_ids"] == [ann["id"]]

    # PATCH: only the fields sent change; emails are replaced; null clears the lead
    r = c.patch(f"/api/contacts/{ann['id']}", json={"emails": ["new@x.test"]}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["emails"] == ["new@x.test"]
    assert r.json()["name"] == "Ann" and r.json()["lead_id"] == lead["id"]
    r = c.patch(f"/api/contacts/{ann['id']}", json={"lead_id": None, "name": "Ann B."}, headers=h)
    assert r.json()["lead_id"] is None and r.json()["name"] == "Ann B."

    # the old address is free again
    r = c.post("/api/contacts", json={"name": "Ann2", "emails": ["ann@example.com"]}, headers=h)
    assert r.status_code == 201

    listed = c.get("/api/contacts", headers=h).json()
    assert [x["name"] for x in listed] == ["Ann B.", "Ann2"]
    found = c.get("/api/contacts", params={"email": "NEW@x.test"}, headers=h).json()
    assert [x["id"] for x in found] == [ann["id"]]


def test_contact_email_unique_per_workspace(world: World) -> None:
    c, h = world.client, world.owner.headers
    bob = c.post("/api/contacts", json={"name": "Bob", "emails": ["bob@x.test"]}, headers=h).json()
    r = c.post(
        "/api/contacts",
        json={"name": "Bobby", "emails": ["BOB@x.test"]},
        headers=world.teammate.headers,
    )
    err = assert_error(r, 409, "conflict")
    # names the contact that has the address
    assert f"contact {bob['id']}" in err["message"] and "Bob" in err["message"]
    other = c.post("/api/contacts", json={"name": "x", "emails": ["y@x.test"]}, headers=h).json()
    r = c.patch(
        f"/api/contacts/{other['id']}", json={"emails": ["y@x.test", "bob@x.test"]}, headers=h
    )
    assert_error(r, 409, "conflict")
    # unchanged after the refused PATCH
    assert c.get(f"/api/contacts/{other['id']}", headers=h).json()["emails"] == ["y@x.test"]
    # re-sending a contact's own address is not a conflict
    r = c.patch(
        f"/api/contacts/{bob['id']}", json={"emails": ["bob@x.test", "b@x.test"]}, headers=h
    )
    assert r.status_code == 200
    # another workspace may know the same person
    r = c.post(
        "/api/contacts", json={"name": "Bob", "emails": ["bob@x.test"]}, headers=world.other.headers
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        ("post", "/api/contacts", {"name": "x", "emails": ["not-an-email"]}, "not a valid email"),
        ("post", "/api/contacts", {"name": "x", "emails": "a@b.c"}, "emails"),
        ("post", "/api/contacts", {"name": "x", "emails": [], "lead": 1}, "lead"),
        ("post", "/api/contacts", {"name": "x" * 301}, "name"),
        ("post", "/api/leads", {}, "name"),
        ("post", "/api/leads", {"name": ""}, "name"),
        ("post", "/api/deals", {"title": "t", "status": "maybe"}, "status"),
        ("post", "/api/deals", {"title": "t", "contact_ids": ["a"]}, "contact_ids"),
        ("post", "/api/deals", {"title": "t", "value_cents": -1}, "value_cents"),
        ("get", "/api/contacts?limit=0", None, "limit"),
        ("get", "/api/contacts/abc", None, "contact_id"),
        ("get", "/api/deals?status=maybe", None, "status"),
    ],
)
def test_validation_errors_have_the_one_shape(
    world: World, method: str, path: str, body: object, fragment: str
) -> None:
    r = world.client.request(method, path, json=body, headers=world.owner.headers)
    err = assert_error(r, 422, "invalid_input")
    assert fragment in err["message"]


def test_malformed_json_is_422(world: World) -> None:
    r = world.client.post(
        "/api/leads",
        content=b"{not json",
        headers={**world.owner.headers, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "invalid_input")


def test_patch_null_on_required_field(world: World) -> None:
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "L"}, headers=h).json()
    assert_error(
        c.patch(f"/api/leads/{lead['id']}", json={"name": None}, headers=h), 422, "invalid_input"
    )
    assert c.get(f"/api/leads/{lead['id']}", headers=h).json()["name"] == "L"


def test_unknown_route_and_method(world: World) -> None:
    assert_error(
        world.client.get("/api/nothing-here", headers=world.owner.headers), 404, "not_found"
    )
    assert_error(
        world.client.put("/api/contacts", headers=world.owner.headers), 405, "method_not_allowed"
    )


def test_lead_crud(world: World) -> None:
    c, h = world.client, world.owner.headers
    r = c.post("/api/leads", json={"name": "Initech"}, headers=h)
    assert r.status_code == 201
    lead = r.json()
    assert lead["contact_ids"] == []
    r = c.patch(f"/api/leads/{lead['id']}", json={"name": "Initrode"}, headers=h)
    assert r.json()["name"] == "Initrode"
    assert [x["name"] for x in c.get("/api/leads", headers=h).json()] == ["Initrode"]
    assert_error(c.get("/api/leads/999", headers=h), 404, "not_found")


def test_deal_crud(world: World) -> None:
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "Initech"}, headers=h).json()
    a = c.post("/api/contacts", json={"name": "A", "emails": ["a@x.test"]}, headers=h).json()
    b = c.post("/api/contacts", json={"name": "B", "emails": ["b@x.test"]}, headers=h).json()
    r = c.post(
        "/api/deals",
        json={
            "title": "Big one",
            "lead_id": lead["id"],
            "contact_ids": [b["id"], a["id"], b["id"]],
            "value_cents": 100,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    deal = r.json()
    assert deal["status"] == "open"
    assert deal["contact_ids"] == sorted([a["id"], b["id"]])
    r = c.patch(
        f"/api/deals/{deal['id']}", json={"status": "won", "contact_ids": [a["id"]]}, headers=h
    )
    assert r.json()["status"] == "won" and r.json()["contact_ids"] == [a["id"]]
    assert r.json()["title"] == "Big one" and r.json()["lead_id"] == lead["id"]
    assert [d["id"] for d in c.get("/api/deals?status=won", headers=h).json()] == [deal["id"]]
    assert c.get("/api/deals?status=open", headers=h).json() == []
    # a contact id that does not exist (or is another workspace's) is "not found"
    assert_error(
        c.post("/api/deals", json={"title": "t", "contact_ids": [999]}, headers=h), 404, "not_found"
    )


def test_references_into_another_workspace_are_not_found(world: World) -> None:
    c = world.client
    lead = c.post("/api/leads", json={"name": "Secret"}, headers=world.owner.headers).json()
    contact = c.post(
        "/api/contacts", json={"emails": ["s@x.test"]}, headers=world.owner.headers
    ).json()
    h = world.other.headers
    assert_error(
        c.post("/api/contacts", json={"emails": ["z@x.test"], "lead_id": lead["id"]}, headers=h),
        404,
        "not_found",
    )
    assert_error(
        c.post("/api/deals", json={"title": "t", "lead_id": lead["id"]}, headers=h),
        404,
        "not_found",
    )
    assert_error(
        c.post("/api/deals", json={"title": "t", "contact_ids": [contact["id"]]}, headers=h),
        404,
        "not_found",
    )
    # and the lists of the other workspace are empty
    assert c.get("/api/contacts", headers=h).json() == []
    assert c.get("/api/leads", headers=h).json() == []


def test_unexpected_errors_are_500_in_the_one_shape(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from crmail.api import create_app
    from crmail.storage import crm

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(crm, "list_leads", boom)
    client = TestClient(create_app(world.services), raise_server_exceptions=False)
    r = client.get("/api/leads", headers=world.owner.headers)
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text
    assert err["message"] == "internal server error"


def test_openapi_docs(world: World) -> None:
    assert world.client.get("/docs").status_code == 200
    spec = world.client.get("/openapi.json").json()
    assert "/api/contacts/{contact_id}/timeline" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/leads", {"name": "Acme\x00Corp"}),
        ("/api/contacts", {"name": "Ann\x00", "emails": ["ann@client.test"]}),
    ],
)
def test_text_with_nul_is_refused_alike_on_every_database(
    world: World, path: str, body: dict[str, Any]
) -> None:
    """PostgreSQL cannot hold NUL in text; SQLite could, but must answer the same."""
    err = assert_error(
        world.client.post(path, json=body, headers=world.admin.headers), 422, "invalid_input"
    )
    assert "NUL" in err["message"]
    listed = world.client.get(path, headers=world.admin.headers).json()
    assert listed == []  # nothing half-stored
