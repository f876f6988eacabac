"""Web app fixtures: the API tests' two-workspace ``world``, plus signed-in browsers.

Each :class:`Browser` is its own TestClient (its own cookie jar) signed in through the
real sign-in form, and knows the session's CSRF token (read from a rendered form).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import pytest
from fastapi.testclient import TestClient

from crmail.api import create_app
from crmail.storage import web as web_store
from tests.api.conftest import Actor, World, api_services, world  # noqa: F401

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class RecordingSync:
    def __init__(self) -> None:
        self.calls = 0
        self.queued: list[int] = []

    def accounts_changed(self) -> None:
        self.calls += 1

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        self.queued.extend(account_ids)


class Browser:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, url: str, **kw: object):  # type: ignore[no-untyped-def]
        return self.client.get(url, follow_redirects=False, **kw)  # type: ignore[arg-type]

    def post(self, url: str, data: dict[str, object] | None = None, **kw: object):  # type: ignore[no-untyped-def]
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.client.post(url, data=form, follow_redirects=False, **kw)  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    form = client.get("/signin")
    return client.post(
        "/signin",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )


@pytest.fixture
def web(world: World) -> Iterator[World]:  # noqa: F811
    """``world`` with web passwords for every actor and a sync stub that records wakes."""
    world.services.sync = RecordingSync()

    def setpw(s):  # type: ignore[no-untyped-def]
        for a in (world.owner, world.teammate, world.admin, world.other):
            web_store.set_password(s, a.id, PASSWORD)

    world.services.db.run(setpw)
    yield world


@pytest.fixture
def browser(web: World) -> Iterator[object]:
    """browser(actor) -> a Browser signed in as that actor."""
    clients: list[TestClient] = []

    def make(actor: Actor) -> Browser:
        client = TestClient(create_app(web.services), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        resp = sign_in(client, actor.email)
        assert resp.status_code == 303, resp.text
        b = Browser(client)
        b.csrf = csrf_of(client.get("/inbox").text)
        return b

    yield make
    for c in clients:
        c.__exit__(None, None, None)
