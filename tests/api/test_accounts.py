"""Mail accounts through the API, against the private Dovecot of tests/servers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crmail.storage.models import Folder, MailAccount
from tests.api.conftest import World
from tests.api.test_crm_routes import assert_error
from tests.db_fixtures import database_bytes
from tests.servers import Dovecot, MailboxAccount


def form(box: MailboxAccount, **changes: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "other",
        "email": box.email,
        "password": box.password,
        "imap_host": box.host,
        # Plaintext on loopback: a CA file needs an admin (see the TLS tests below).
        "imap_port": box.port,
        "imap_security": "none",
    }
    body.update(changes)
    return body


def db_bytes(world: World) -> bytes:
    return database_bytes(world.services)


def test_providers(world: World) -> None:
    r = world.client.get("/api/providers", headers=world.owner.headers)
    assert r.status_code == 200
    by_key = {p["key"]: p for p in r.json()}
    assert by_key["gmail"]["imap_host"] == "imap.gmail.com" and by_key["gmail"]["imap_port"] == 993
    assert "app password" in by_key["gmail"]["app_password_hint"]
    assert "other" in by_key


def tls_form(box: MailboxAccount, **changes: object) -> dict[str, Any]:
    tls: dict[str, object] = {
        "imap_port": box.tls_port,
        "imap_security": "tls",
        "ca_file": box.ca_file,
    }
    return form(box, **{**tls, **changes})


def test_connection_test_lists_folders(world: World, mailbox: MailboxAccount) -> None:
    r = world.client.post("/api/accounts/test", json=form(mailbox), headers=world.owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True
    assert "INBOX" in r.json()["folders"]
    # implicit TLS and STARTTLS with the server's private CA (a file only admins may name)
    for body in (
        tls_form(mailbox),
        tls_form(mailbox, imap_port=mailbox.port, imap_security="starttls"),
    ):
        r = world.client.post("/api/accounts/test", json=body, headers=world.admin.headers)
        assert r.status_code == 200, r.text


def test_only_admins_name_a_ca_file(world: World, mailbox: MailboxAccount) -> None:
    r = world.client.post("/api/accounts/test", json=tls_form(mailbox), headers=world.owner.headers)
    assert_error(r, 403, "forbidden")


def test_create_account_stores_the_password_sealed(world: World, mailbox: MailboxAccount) -> None:
    password = mailbox.password
    r = world.client.post(
        "/api/accounts",
        json=form(mailbox, history_days=30, folders=["Projects", "Projects"]),
        headers=world.owner.headers,
    )
    assert r.status_code == 201, r.text
    acc = r.json()
    assert acc["email"] == mailbox.email and acc["user_id"] == world.owner.id
    assert acc["state"] == "new"
    assert acc["settings"]["history_days"] == 30 and acc["settings"]["folders"] == ["Projects"]
    assert acc["settings"]["preset"] == "other"
    assert world.sync.calls == 1
    assert password not in r.text

    for path in (
        "/api/accounts",
        f"/api/accounts/{acc['id']}",
        f"/api/accounts/{acc['id']}/status",
    ):
        resp = world.client.get(path, headers=world.owner.headers)
        assert resp.status_code == 200
        assert password not in resp.text
    assert password.encode() not in db_bytes(world)

    def secret(s: Any) -> bytes:
        a = s.get_one(MailAccount, acc["id"])
        assert "password" not in a.settings
        raw: bytes = a.secret
        return raw

    assert world.services.box.open(world.services.db.run(secret)) == {"password": password}

    # the same mailbox twice for the same user is a conflict
    r = world.client.post("/api/accounts", json=form(mailbox), headers=world.owner.headers)
    assert_error(r, 409, "conflict")


def test_bad_password_is_refused_with_a_hint(world: World, mailbox: MailboxAccount) -> None:
    r = world.client.post(
        "/api/accounts", json=form(mailbox, password="wrong-password"), headers=world.owner.headers
    )
    err = assert_error(r, 422, "auth_failed")
    assert "application-specific password" in err["hint"]  # the "other" preset's advice
    assert "wrong-password" not in r.text
    assert world.client.get("/api/accounts", headers=world.owner.headers).json() == []
    assert world.sync.calls == 0

    r = world.client.post(
        "/api/accounts/test",
        json=form(mailbox, password="wrong-password", provider="gmail"),
        headers=world.owner.headers,
    )
    err = assert_error(r, 422, "auth_failed")
    assert "myaccount.google.com" in err["hint"]


def test_app_password_required(world: World, dovecot: Dovecot) -> None:
    box = dovecot.add_user("twofa@example.test", "right-pw", app_password_required=True)
    r = world.client.post(
        "/api/accounts/test", json=form(box, provider="yahoo"), headers=world.owner.headers
    )
    err = assert_error(r, 422, "app_password_required")
    assert "Generate app password" in err["hint"]


def test_unreachable_server(world: World, mailbox: MailboxAccount) -> None:
    from tests.servers.dovecot import free_port

    r = world.client.post(
        "/api/accounts/test", json=form(mailbox, imap_port=free_port()), headers=world.owner.headers
    )
    err = assert_error(r, 502, "server_unreachable")
    assert err["hint"]


def test_untrusted_certificate_hints_at_ca_file(world: World, mailbox: MailboxAccount) -> None:
    r = world.client.post(
        "/api/accounts/test", json=tls_form(mailbox, ca_file=None), headers=world.owner.headers
    )
    err = assert_error(r, 502, "tls_failed")
    assert "ca_file" in err["hint"]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"imap_port": "abc"}, "imap_port"),
        ({"imap_security": "ssl"}, "imap_security"),
        ({"provider": "aol"}, "unknown provider"),
        ({"provider": "other", "imap_host": None}, "imap_host"),
        ({"ca_file": "/no/such/ca.pem"}, "ca_file"),
        ({"email": "not an address"}, "not a valid email"),
        ({"history_days": 0}, "history_days"),
    ],
)
def test_account_form_validation_never_echoes_the_password(
    world: World, changes: dict[str, object], fragment: str
) -> None:
    body = {
        "provider": "other",
        "email": "me@acme.test",
        "password": "hunter2-DO-NOT-ECHO",
        "imap_host": "127.0.0.1",
        **changes,
    }
    # an admin: members may not name a CA file at all
    r = world.client.post("/api/accounts", json=body, headers=world.admin.headers)
    err = assert_error(r, 422, "invalid_input")
    assert fragment in err["message"]
    assert "hunter2" not in r.text


def test_status(world: World) -> None:
    box = world.mailbox(world.owner)

    def progress(s: Any) -> None:
        for f in s.scalars(select(Folder).where(Folder.account_id == box.account_id)):
            f.import_total, f.import_done, f.synced = (
                (200, 50, 40) if f.name == "INBOX" else (0, 0, 0)
            )
            f.skipped = {"no_known_contact": 7} if f.name == "INBOX" else {"no_known_contact": 1}
        a = s.get_one(MailAccount, box.account_id)
        a.state, a.last_error_code, a.last_error = "auth_error", "auth_failed", "login refused"

    world.services.db.run(progress)
    for actor in (world.owner, world.admin):
        r = world.client.get(f"/api/accounts/{box.account_id}/status", headers=actor.headers)
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] == "auth_error" and st["last_error"] == "login refused"
        assert "myaccount.google.com" in st["hint"]  # the account was made with the gmail preset
        assert st["synced"] == 40 and st["skipped"] == {"no_known_contact": 8}
        inbox = next(f for f in st["folders"] if f["name"] == "INBOX")
        assert (inbox["done"], inbox["total"], inbox["percent"]) == (50, 200, 25.0)
        assert st["lag_seconds"] is None  # never synced
    assert_error(
        world.client.get(f"/api/accounts/{box.account_id}/status", headers=world.teammate.headers),
        404,
        "not_found",
    )


def test_account_listing_scopes(world: World) -> None:
    mine = world.mailbox(world.owner)
    theirs = world.mailbox(world.teammate)
    world.mailbox(world.other)
    c = world.client

    def ids(actor: Any, **params: Any) -> list[int]:
        r = c.get("/api/accounts", params=params, headers=actor.headers)
        assert r.status_code == 200
        return [a["id"] for a in r.json()]

    assert ids(world.owner) == [mine.account_id]
    assert ids(world.owner, all_users="true") == [mine.account_id]  # not an admin
    assert ids(world.admin) == []
    assert ids(world.admin, all_users="true") == [mine.account_id, theirs.account_id]
    # an admin may look at, but not remove, a teammate's account
    assert c.get(f"/api/accounts/{mine.account_id}", headers=world.admin.headers).status_code == 200
    assert_error(
        c.delete(f"/api/accounts/{mine.account_id}", headers=world.admin.headers), 403, "forbidden"
    )
