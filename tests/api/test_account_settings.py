"""Everything the web app's Settings → Email can do, the API can do.

A mailbox's options (mode, scope, folders, archive on Done, auto-create), its connection,
and the workspace's auto-create blocklist are read and set through the REST API; the
forms of the web app are checked field by field against the API's documented schemas.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.test_accounts import form
from tests.api.test_crm_routes import assert_error
from tests.servers import MailboxAccount
from tests.web.conftest import Browser, browser, web  # noqa: F401

pytestmark = pytest.mark.db

OPTIONS = {
    "mode": "one_way",
    "scope": "folders",
    "folders": ["Projects", "Clients/Acme"],
    "archive_on_done": False,
    "auto_create_contacts": True,
    "auto_create_incoming": True,
}


def test_options_are_set_and_read_through_the_api(world: World) -> None:
    # The stored server (imap.invalid) cannot be reached: options change without a login.
    box = world.mailbox(world.owner)
    path = f"/api/accounts/{box.account_id}"
    before = world.client.get(path, headers=world.owner.headers).json()
    assert {k: before[k] for k in OPTIONS} == {
        "mode": "two_way",
        "scope": "contacts",
        "folders": [],
        "archive_on_done": True,
        "auto_create_contacts": False,
        "auto_create_incoming": False,
    }

    r = world.client.patch(path, json=OPTIONS, headers=world.owner.headers)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in OPTIONS} == OPTIONS
    assert world.sync.calls == 1  # the worker restarts with them

    # only what is given changes
    r = world.client.patch(path, json={"archive_on_done": True}, headers=world.owner.headers)
    assert r.status_code == 200, r.text
    after = world.client.get(path, headers=world.owner.headers).json()
    assert {k: after[k] for k in OPTIONS} == {**OPTIONS, "archive_on_done": True}
    assert after["settings"]["mode"] == "one_way"  # stored where the sync engine reads it
    assert after["imap_host"] == "imap.invalid" and after["preset"] == "gmail"


@pytest.mark.parametrize(
    "body",
    [{"mode": "three_way"}, {"scope": "all"}, {"folders": [""]}, {"archive_on_done": "maybe"}],
)
def test_bad_options_are_422(world: World, body: dict[str, object]) -> None:
    box = world.mailbox(world.owner)
    r = world.client.patch(
        f"/api/accounts/{box.account_id}", json=body, headers=world.owner.headers
    )
    assert_error(r, 422, "invalid_input")


def test_only_the_owner_sets_options(world: World) -> None:
    box = world.mailbox(world.owner)
    path = f"/api/accounts/{box.account_id}"
    body = {"mode": "one_way"}
    assert_error(world.client.patch(path, json=body, headers=world.admin.headers), 403, "forbidden")
    for actor in (world.teammate, world.other):
        assert_error(world.client.patch(path, json=body, headers=actor.headers), 404, "not_found")
    assert world.client.get(path, headers=world.owner.headers).json()["mode"] == "two_way"


def test_options_at_connect(world: World, mailbox: MailboxAccount) -> None:
    r = world.client.post(
        "/api/accounts", json=form(mailbox, **OPTIONS), headers=world.owner.headers
    )
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in OPTIONS} == OPTIONS
    assert r.json()["imap_port"] == mailbox.port and r.json()["username"] == mailbox.email


def test_options_and_connection_change_together(world: World, mailbox: MailboxAccount) -> None:
    made = world.client.post("/api/accounts", json=form(mailbox), headers=world.owner.headers)
    assert made.status_code == 201, made.text
    r = world.client.patch(
        f"/api/accounts/{made.json()['id']}",
        json={"password": mailbox.password, "scope": "crm_threads"},
        headers=world.owner.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "crm_threads"


def test_blocklist_through_the_api(world: World) -> None:
    path = "/api/workspace/auto-create-blocklist"
    assert world.client.get(path, headers=world.owner.headers).json() == {"entries": []}
    body = {"entries": [" Boss@Partner.test ", "@competitor.test", "@competitor.test"]}
    assert_error(world.client.put(path, json=body, headers=world.owner.headers), 403, "forbidden")
    r = world.client.put(path, json=body, headers=world.admin.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"entries": ["boss@partner.test", "@competitor.test"]}
    assert world.client.get(path, headers=world.owner.headers).json() == r.json()
    # another workspace has its own
    assert world.client.get(path, headers=world.other.headers).json() == {"entries": []}

    bad = world.client.put(path, json={"entries": ["not an address"]}, headers=world.admin.headers)
    assert_error(bad, 422, "invalid_input")
    assert world.client.get(path, headers=world.owner.headers).json() == r.json()


def test_blocklist_in_the_web_app(world: World, browser: Any) -> None:  # noqa: F811
    admin: Browser = browser(world.admin)
    r = admin.post("/settings/email/blocklist", {"entries": "boss@partner.test\n\n@rival.test\n"})
    assert r.status_code == 303, r.text
    page = admin.get("/settings/email").text
    assert "boss@partner.test\n@rival.test" in page
    api = world.client.get("/api/workspace/auto-create-blocklist", headers=world.owner.headers)
    assert api.json() == {"entries": ["boss@partner.test", "@rival.test"]}

    member: Browser = browser(world.owner)
    r = member.post("/settings/email/blocklist", {"entries": ""})
    assert r.status_code == 403
    assert 'action="/settings/email/blocklist"' not in member.get("/settings/email").text


# --- the web app's forms against the API's schemas ------------------------------------------


class _Forms(HTMLParser):
    """Field names of every POST form of a page, by the form's action."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, set[str]] = {}
        self._action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self._action = a.get("action") or ""
            self.forms.setdefault(self._action, set())
        elif tag in ("input", "select", "textarea") and self._action is not None:
            name = a.get("name")
            if name and name != "csrf_token":
                self.forms[self._action].add(name)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


def _forms(html: str) -> dict[str, set[str]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _properties(spec: dict[str, Any], method: str, path: str, which: str) -> set[str]:
    op = spec["paths"][path][method]
    if which == "request":
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    else:
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    return set(spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


#: form field -> API field, where the names differ
_RENAMED = {"provider": "preset"}
#: write-only in the API (never shown)
_SECRET = {"password"}


def test_every_web_form_field_is_in_the_api(world: World, browser: Any) -> None:  # noqa: F811
    box = world.mailbox(world.admin)
    admin: Browser = browser(world.admin)
    forms: dict[str, set[str]] = {}
    for page in ("/settings/email", f"/settings/email/accounts/{box.account_id}"):
        r = admin.get(page)
        assert r.status_code == 200
        forms.update(
            (action, fields)
            for action, fields in _forms(r.text).items()
            if action.startswith("/settings/email")
        )
    spec = world.client.get("/openapi.json").json()
    one = "/api/accounts/{account_id}"
    account_out = _properties(spec, "get", one, "response")
    blocklist = "/api/workspace/auto-create-blocklist"
    # Each form of Settings → Email, and the API operation doing the same.
    api_for = {
        "/settings/email/connect": _properties(spec, "post", "/api/accounts", "request"),
        f"/settings/email/accounts/{box.account_id}/options": _properties(
            spec, "patch", one, "request"
        ),
        f"/settings/email/accounts/{box.account_id}/reconnect": _properties(
            spec, "patch", one, "request"
        ),
        f"/settings/email/accounts/{box.account_id}/disconnect": set(),
        "/settings/email/blocklist": _properties(spec, "put", blocklist, "request"),
    }
    assert set(forms) == set(api_for), "a form of Settings → Email has no API counterpart here"
    missing = {action: fields - api_for[action] for action, fields in forms.items()}
    assert not any(missing.values()), f"form fields the API cannot set: {missing}"

    account_fields = set().union(*(forms[a] for a in api_for if "/accounts/" in a))
    account_fields |= forms["/settings/email/connect"]
    unreadable = {_RENAMED.get(f, f) for f in account_fields - _SECRET} - account_out
    assert not unreadable, f"settings the API does not show: {unreadable}"
    assert forms["/settings/email/blocklist"] <= _properties(spec, "get", blocklist, "response")
    assert forms[f"/settings/email/accounts/{box.account_id}/options"]  # the parser saw it
