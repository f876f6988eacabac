"""The sign-in form's defences: a CSRF token bound to its pre-session, rate limits per client
IP and per account (with proxy headers believed from configured proxies only), and
signed inline-image links that end with the session."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from crmail.api import create_app
from crmail.domain.netpolicy import parse_networks
from crmail.ratelimit import FailureLimiter
from crmail.runtime import server_config
from crmail.web.ratelimit import SignInLimiter
from tests.api.conftest import World
from tests.web.conftest import PASSWORD, csrf_of, sign_in
from tests.web.test_web import mail  # noqa: F401

ATTACKER = "203.0.113.66"


def client_at(web: World, ip: str, *, limit: int = 3, **kw: object) -> TestClient:
    """A browser at ``ip`` on an app whose sign-in limits are ``limit`` failures."""
    app = create_app(web.services)
    app.state.web_signin_limiter = SignInLimiter(
        per_ip=FailureLimiter(max_failures=limit), per_account=FailureLimiter(max_failures=limit)
    )
    return TestClient(app, client=(ip, 40000), **kw)  # type: ignore[arg-type]


At = Callable[[str], TestClient]


@pytest.fixture
def shared_app(web: World) -> Iterator[At]:
    """clients(ip) -> browsers at several addresses, all on one app (one set of counts)."""
    app = create_app(web.services)
    app.state.web_signin_limiter = SignInLimiter(
        per_ip=FailureLimiter(max_failures=3), per_account=FailureLimiter(max_failures=3)
    )
    made: list[TestClient] = []

    def at(ip: str) -> TestClient:
        c = TestClient(app, client=(ip, 40000))
        made.append(c)
        return c

    yield at
    for c in made:
        c.close()


def post_signin(c: TestClient, email: str, password: str, token: str, **kw: object):  # type: ignore[no-untyped-def]
    return c.post(
        "/signin",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
        **kw,  # type: ignore[arg-type]
    )


# --- login CSRF -------------------------------------------------------------------------------


def test_a_tossed_cookie_with_a_made_up_token_is_refused(web: World) -> None:
    c = web.client
    c.cookies.set("crmail_signin", "attacker-chosen-pre-session-id-0123456789")
    resp = post_signin(c, web.owner.email, PASSWORD, "attacker-chosen-pre-session-id-0123456789")
    assert resp.status_code == 403
    resp = post_signin(c, web.owner.email, PASSWORD, "0" * 64)
    assert resp.status_code == 403
    assert "crmail_session" not in resp.headers.get("set-cookie", "")


def test_a_token_from_another_pre_session_is_refused(web: World) -> None:
    with TestClient(create_app(web.services)) as attacker:
        token = csrf_of(attacker.get("/signin").text)  # valid, but for the attacker's cookie
    victim = web.client
    victim.get("/signin")  # the victim's own pre-session
    assert post_signin(victim, web.owner.email, PASSWORD, token).status_code == 403
    assert sign_in(victim, web.owner.email).status_code == 303  # the normal flow works


def test_the_form_token_is_not_the_cookie_value(web: World) -> None:
    page = web.client.get("/signin")
    assert csrf_of(page.text) != web.client.cookies["crmail_signin"]


def test_a_cross_site_post_is_refused_even_with_a_valid_pair(web: World) -> None:
    token = csrf_of(web.client.get("/signin").text)
    for site in ("cross-site", "same-site"):
        resp = post_signin(
            web.client, web.owner.email, PASSWORD, token, headers={"Sec-Fetch-Site": site}
        )
        assert resp.status_code == 403, site
    ok = post_signin(
        web.client, web.owner.email, PASSWORD, token, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 303


def test_over_https_the_pre_session_cookie_is_host_prefixed(web: World) -> None:
    web.services.settings = replace(web.services.settings, cookie_secure=True)
    with TestClient(create_app(web.services), base_url="https://testserver") as c:
        page = c.get("/signin")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-crmail_signin=")
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
        # a plain-named cookie (what a sibling subdomain could plant) is not the one read
        c.cookies.set("crmail_signin", c.cookies["__Host-crmail_signin"])
        del c.cookies["__Host-crmail_signin"]
        assert post_signin(c, web.owner.email, PASSWORD, csrf_of(page.text)).status_code == 403
        assert sign_in(c, web.owner.email).status_code == 303


# --- rate limits ------------------------------------------------------------------------------


def test_one_password_across_many_addresses_is_limited_per_ip(web: World, shared_app: At) -> None:
    at = shared_app
    attacker = at(ATTACKER)
    for i in range(3):
        assert sign_in(attacker, f"guess{i}@acme.test", "Summer2024!").status_code == 401
    blocked = sign_in(attacker, web.teammate.email, "Summer2024!")
    assert blocked.status_code == 429 and "your network" in blocked.text
    assert int(blocked.headers["retry-after"]) > 0
    # another client is not blocked, and the untouched account still signs in
    assert sign_in(at("198.51.100.7"), web.teammate.email).status_code == 303


def test_one_address_tried_from_many_ips_is_limited_per_account(web: World, shared_app: At) -> None:
    at = shared_app
    for i in range(3):
        c = at(f"198.51.100.{i + 10}")
        assert sign_in(c, web.owner.email, "wrong password!").status_code == 401
    fresh = at("198.51.100.99")
    blocked = sign_in(fresh, web.owner.email)  # even the right password now
    assert blocked.status_code == 429 and "this address" in blocked.text
    assert sign_in(fresh, web.teammate.email).status_code == 303


def test_forwarded_for_is_ignored_from_untrusted_peers(web: World) -> None:
    # The peer is loopback, as a local process would be: its X-Forwarded-For must not
    # give it a fresh count per made-up address.
    with client_at(web, "127.0.0.1") as c:
        for i in range(3):
            resp = sign_in_with(c, f"guess{i}@acme.test", {"X-Forwarded-For": f"192.0.2.{i}"})
            assert resp.status_code == 401
        resp = sign_in_with(c, "guess9@acme.test", {"X-Forwarded-For": "192.0.2.99"})
        assert resp.status_code == 429


def test_forwarded_for_is_believed_from_a_configured_proxy(web: World) -> None:
    web.services.settings = replace(
        web.services.settings, trusted_proxies=parse_networks("10.0.0.0/8", setting="t")
    )
    with client_at(web, "10.1.2.3") as proxy:
        for i in range(3):
            resp = sign_in_with(proxy, f"guess{i}@acme.test", {"X-Forwarded-For": ATTACKER})
            assert resp.status_code == 401
        # the attacker behind the proxy is blocked; someone else behind it is not
        assert sign_in_with(proxy, "x@acme.test", {"X-Forwarded-For": ATTACKER}).status_code == 429
        other = sign_in_with(proxy, web.owner.email, {"X-Forwarded-For": "198.51.100.5"}, PASSWORD)
        assert other.status_code == 303


def test_crmail_run_does_not_let_uvicorn_believe_proxy_headers(web: World) -> None:
    config = server_config(web.services, create_app(web.services))
    assert config.proxy_headers is False


def sign_in_with(c: TestClient, email: str, headers: dict[str, str], password: str = "bad guess!"):  # type: ignore[no-untyped-def]
    token = csrf_of(c.get("/signin", headers=headers).text)
    return post_signin(c, email, password, token, headers=headers)


# --- signed inline-image links ----------------------------------------------------------------


def test_inline_image_links_end_with_the_session(
    web: World,
    mail: dict[str, int],  # noqa: F811
) -> None:
    c = web.client
    assert sign_in(c, web.owner.email).status_code == 303
    body = c.get(f"/messages/{mail['message']}/body").text
    m = re.search(r'src="(/messages/\d+/cid/[^"]+)"', body)
    assert m, body
    cid_url = m.group(1).replace("&amp;", "&")
    with TestClient(create_app(web.services)) as frame:  # the sandboxed frame: no cookie
        assert frame.get(cid_url).status_code == 200
        page = c.get("/inbox")
        assert c.post("/signout", data={"csrf_token": csrf_of(page.text)}).status_code in (
            200,
            303,
        )
        assert frame.get(cid_url).status_code == 401
