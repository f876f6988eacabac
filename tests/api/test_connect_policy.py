"""The connection test is no port scanner: mail servers obey the address policy (public
addresses unless the operator allows a network), on the test, on saving an account
(API and web) and at every connection of the sync worker; and every way of failing to
reach a server gives one answer."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from crmail.api import create_app
from crmail.config import Settings
from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import AddressNotAllowed, InvalidInput
from crmail.runtime import worker_options
from crmail.storage import mail
from crmail.storage import web as web_store
from crmail.storage.models import MailAccount
from crmail.sync.worker import AccountWorker, WorkerOptions, imap_settings
from tests.api.conftest import World
from tests.api.test_crm_routes import assert_error
from tests.servers.dovecot import free_port
from tests.web.conftest import Browser, csrf_of, sign_in

REFUSED = ["127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1", "10.0.0.5", "192.168.1.1",
           "169.254.169.254", "100.64.0.1", "0.0.0.0", "fe80::1"]  # fmt: skip


def form(host: str, port: int, **changes: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "other",
        "email": "me@acme.test",
        "password": "secret password",
        "imap_host": host,
        "imap_port": port,
        "imap_security": "none",
    }
    body.update(changes)
    return body


@pytest.fixture
def default_policy(world: World) -> World:
    """``world`` with the default policy: public addresses only."""
    world.services.settings = replace(world.services.settings, mail_allowed_networks=())
    return world


class Listener:
    """A TCP port on loopback that records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def was_connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.sock.close()


@pytest.mark.parametrize("host", REFUSED)
def test_loopback_and_private_servers_are_refused_by_default(
    default_policy: World, host: str
) -> None:
    w = default_policy
    r = w.client.post("/api/accounts/test", json=form(host, 143), headers=w.owner.headers)
    err = assert_error(r, 422, "address_not_allowed")
    assert "CRMAIL_MAIL_ALLOWED_NETWORKS" in err["hint"]


def test_no_connection_is_attempted_to_a_refused_address(
    default_policy: World, listener: Listener
) -> None:
    w = default_policy
    r = w.client.post(
        "/api/accounts/test", json=form("127.0.0.1", listener.port), headers=w.owner.headers
    )
    assert r.status_code == 422
    assert not listener.was_connected()


def test_saving_an_account_obeys_the_policy_too(default_policy: World) -> None:
    w = default_policy
    r = w.client.post("/api/accounts", json=form("10.0.0.5", 993), headers=w.owner.headers)
    assert_error(r, 422, "address_not_allowed")
    assert w.client.get("/api/accounts", headers=w.owner.headers).json() == []
    box = w.mailbox(w.owner)  # stored directly, as an older version might have
    r = w.client.patch(
        f"/api/accounts/{box.account_id}",
        json={"imap_host": "169.254.169.254", "imap_port": 80, "imap_security": "none"},
        headers=w.owner.headers,
    )
    assert_error(r, 422, "address_not_allowed")


def test_a_private_smtp_server_is_refused_on_saving(world: World) -> None:
    # IMAP on loopback is allowed in the tests' settings; the SMTP host is not.
    body = form("127.0.0.1", free_port(), smtp_host="10.9.8.7", smtp_port=25)
    r = world.client.post("/api/accounts", json=body, headers=world.owner.headers)
    err = assert_error(r, 422, "address_not_allowed")
    assert "SMTP" in err["message"]


def test_the_web_form_obeys_the_policy(default_policy: World, listener: Listener) -> None:
    w = default_policy
    w.services.db.run(lambda s: web_store.set_password(s, w.owner.id, "correct horse battery"))
    with TestClient(create_app(w.services)) as c:
        assert sign_in(c, w.owner.email, "correct horse battery").status_code == 303
        b = Browser(c)
        b.csrf = csrf_of(c.get("/settings/email").text)
        fields = {k: str(v) for k, v in form("127.0.0.1", listener.port).items()}
        for action in ("test", "connect"):
            r = b.post(f"/settings/email/{action}", fields)
            assert r.status_code == 422, action
            assert "private or reserved" in r.text and "CRMAIL_MAIL_ALLOWED_NETWORKS" in r.text
    assert not listener.was_connected()
    assert w.client.get("/api/accounts", headers=w.owner.headers).json() == []


# --- one answer for every way of not reaching a server ------------------------------------


class Banner:
    """A server on loopback that greets with something that is not IMAP (an SSH banner)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 internal-build-host\r\n")
            conn.close()


def test_unreachable_refused_and_foreign_servers_answer_alike(world: World) -> None:
    banner = Banner()
    try:
        targets = {
            "closed port": ("127.0.0.1", free_port()),
            "another service": ("127.0.0.1", banner.port),
            "unknown name": ("no-such-host.invalid", 143),
        }
        answers = {}
        for what, (host, port) in targets.items():
            r = world.client.post(
                "/api/accounts/test", json=form(host, port), headers=world.owner.headers
            )
            err = assert_error(r, 502, "server_unreachable")
            answers[what] = (err["message"].replace(f"{host}:{port}", "HOST"), err.get("hint"))
    finally:
        banner.sock.close()
    assert len(set(answers.values())) == 1, answers
    message, hint = answers["closed port"]
    assert message == "could not connect to HOST" and hint
    assert "SSH" not in message and "refused" not in message.lower()


# --- the sync worker ---------------------------------------------------------------------------


def test_the_worker_checks_the_policy_at_every_connection(world: World, listener: Listener) -> None:
    box = world.mailbox(world.owner)

    def point_at_loopback(s: Any) -> None:
        a = s.get(MailAccount, box.account_id)
        a.settings = {**a.settings, "imap_host": "127.0.0.1", "imap_port": listener.port,
                      "imap_security": "none"}  # fmt: skip

    world.services.db.run(point_at_loopback)
    worker = AccountWorker(
        world.services.db,
        world.services.box,
        box.account_id,
        WorkerOptions(address_policy=AddressPolicy()),
    )
    with pytest.raises(AddressNotAllowed):
        asyncio.run(worker.run_once())
    assert not listener.was_connected()
    info = world.services.db.run(lambda s: mail.account_info(s, box.account_id))
    assert imap_settings(info, world.services.box, AddressPolicy()).address_policy is not None


def test_the_runtime_gives_workers_the_configured_policy(world: World) -> None:
    assert worker_options(world.services).address_policy == world.services.settings.mail_policy
    s = replace(world.services.settings, mail_allowed_networks=())
    world.services.settings = s
    assert worker_options(world.services).address_policy == AddressPolicy()


def test_allowed_networks_setting() -> None:
    s = Settings.from_env({"CRMAIL_MAIL_ALLOWED_NETWORKS": "10.0.0.0/8, 192.0.2.7"})
    policy = s.mail_policy
    assert policy.allows(ipaddress.ip_address("10.1.2.3"))
    assert policy.allows(ipaddress.ip_address("192.0.2.7"))
    assert not policy.allows(ipaddress.ip_address("192.168.0.1"))
    assert not policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert Settings.from_env({}).mail_policy == AddressPolicy()
    with pytest.raises(InvalidInput, match="CRMAIL_MAIL_ALLOWED_NETWORKS"):
        Settings.from_env({"CRMAIL_MAIL_ALLOWED_NETWORKS": "office-lan"})
    with pytest.raises(InvalidInput, match="CRMAIL_TRUSTED_PROXIES"):
        Settings.from_env({"CRMAIL_TRUSTED_PROXIES": "10.0.0.0/33"})
