"""Hostile HTML mail, synced from a real mailbox and opened in a real browser, runs nothing.

Every payload tries to prove it ran by changing the top page's title or by calling a
loopback "canary" HTTP server; the canary must see no request and the page may only
ever request its own origin (remote images stay blocked until the user asks).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from crmail.storage import accounts, crm
from crmail.storage.models import Message
from tests.browser.conftest import Crm, shot, sign_in
from tests.browser.test_web_app import wait_until
from tests.factories import message
from tests.servers import Dovecot, MailboxAccount

pytestmark = pytest.mark.browser


class Canary:
    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.httpd.shutdown()


def corpus(c: str) -> dict[str, str]:
    pwn = "window.top.document.title='PWNED';fetch('" + c + "/js')"
    return {
        "script": f"<script>{pwn}</script><p>hello</p>",
        "onerror": f'<img src="x" onerror="{pwn}">',
        "onload-body": f'<body onload="{pwn}"><p>body</p></body>',
        "javascript-url": f'<a href="javascript:{pwn}" id="go">click</a>',
        "css-expression": f'<div style="width: expression({pwn}); background:url({c}/css)">css</div>',
        "style-import": f"<style>@import url({c}/import.css); body{{background:url({c}/bg)}}</style>",
        "svg-script": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{pwn}"><script>{pwn}</script></svg>',
        "form": f'<form action="{c}/form" method="post"><input name="q" value="1"><button>go</button></form>',
        "meta-refresh": f'<meta http-equiv="refresh" content="0;url={c}/meta">',
        "remote-image": f'<img src="{c}/pixel.gif" width="1" height="1">',
        "iframe": f'<iframe src="{c}/frame"></iframe><iframe srcdoc="<script>{pwn}</script>"></iframe>',
        "base-href": f'<base href="{c}/"><img src="relative.gif"><a href="rel">rel</a>',
        "object-embed": f'<object data="{c}/obj"></object><embed src="{c}/embed">',
        "data-svg-image": '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIi8+">',
        "link-stylesheet": f'<link rel="stylesheet" href="{c}/link.css"><p>x</p>',
        "entity-obfuscated": f'<a href="jav&#x09;ascript:{pwn}">x</a><img src=x onerror&#61;"{pwn}">',
    }


def test_hostile_html_runs_nothing_and_loads_nothing(
    live: Crm, page: object, dovecot: Dovecot, mailbox: MailboxAccount, canary: Canary
) -> None:
    ws = live.workspace_id
    live.services.db.run(
        lambda s: crm.create_contact(s, ws, name="Mallory", emails=["mallory@evil.test"])
    )
    cases = corpus(canary.url)
    for name, html in cases.items():
        dovecot.deliver(
            mailbox.email,
            message(
                "mallory@evil.test",
                mailbox.email,
                f"xss {name}",
                "text",
                html=html,
                msgid=f"<{name}@evil.test>",
            ),
        )
    secret = live.services.box.seal({"password": mailbox.password})
    owner = live.owner
    live.services.db.run(
        lambda s: accounts.create_account(
            s, workspace_id=ws, user_id=owner.id, email=mailbox.email, provider="imap",
            settings={"imap_host": mailbox.host, "imap_port": mailbox.tls_port, "imap_security": "tls",
                      "ca_file": mailbox.ca_file, "username": mailbox.email},
            secret=secret,
        )
    )  # fmt: skip
    live.services.sync.accounts_changed()

    def threads() -> dict[str, int]:
        from sqlalchemy import select

        rows = live.services.db.run(
            lambda s: s.execute(select(Message.subject, Message.thread_id)).all()
        )
        return {subj.removeprefix("xss "): tid for subj, tid in rows}

    wait_until(lambda: len(threads()) >= len(cases), 25)

    p = page
    sign_in(p, live.url, owner.email)
    requests: list[str] = []
    dialogs: list[str] = []
    p.on("request", lambda r: requests.append(r.url))  # type: ignore[attr-defined]
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    for name, tid in sorted(threads().items()):
        p.goto(f"{live.url}/threads/{tid}", wait_until="load")  # type: ignore[attr-defined]
        p.wait_for_timeout(150)  # type: ignore[attr-defined]
        assert p.title() != "PWNED", name  # type: ignore[attr-defined]
        links = p.frame_locator("iframe.body").locator("a")  # type: ignore[attr-defined]
        for i in range(links.count()):
            href = links.nth(i).get_attribute("href") or ""
            assert "javascript" not in href.lower(), name
        if name == "script":
            shot(p, "07-xss-thread")
    p.wait_for_timeout(500)  # type: ignore[attr-defined]
    foreign = [u for u in requests if not u.startswith((live.url, "data:", "about:"))]
    assert foreign == []
    assert canary.hits == []
    assert dialogs == []
    # the listener did see the page's own requests: every message body frame loaded
    assert sum("/body" in u for u in requests) >= len(cases)
    # "Show images" hands the remote URL to the frame; CSP still allows only https: there,
    # so even then this plain-http tracker gets nothing
    p.goto(f"{live.url}/threads/{threads()['remote-image']}", wait_until="load")  # type: ignore[attr-defined]
    p.click("text=Show images")  # type: ignore[attr-defined]
    p.wait_for_load_state("load")  # type: ignore[attr-defined]
    img = p.frame_locator("iframe.body").locator("img")  # type: ignore[attr-defined]
    assert img.get_attribute("src") == f"{canary.url}/pixel.gif"
    p.wait_for_timeout(300)  # type: ignore[attr-defined]
    assert canary.hits == []
