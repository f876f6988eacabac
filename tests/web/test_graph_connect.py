"""Connect with Microsoft in Graph mode (the default): the web app's button, the fake
identity platform's consent and tokens, a ``graph`` account importing from the fake
Graph with those tokens, refreshed on a 401, paused with a reconnect hint when the
grant is revoked (nothing lost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from crmail.errors import AuthFailed
from crmail.providers.oauth.registry import MICROSOFT_GRAPH_SCOPES, provider_for
from crmail.storage import accounts
from crmail.storage.models import MailAccount, Placement
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.oauth import REFRESH, token_keeper
from crmail.sync.worker import WorkerOptions
from tests.api.conftest import World
from tests.factories import message
from tests.fakes.graph import FakeGraph, Mailbox
from tests.fakes.oauth import RunningFakeOAuth
from tests.fakes.server import LoopbackServer
from tests.web.test_oauth_connect import SENDER, add_contact, connect, fake, oauth_web

pytestmark = pytest.mark.db

__all__ = ["fake", "oauth_web"]  # fixtures shared with test_oauth_connect

MAILBOX = "robin@fabrikam.example.test"


@pytest.fixture(scope="module")
def graph(fake: RunningFakeOAuth) -> Iterator[tuple[FakeGraph, str]]:
    """The fake Graph, trusting the fake identity platform's live tokens that carry
    the Graph mail scope (an IMAP-scoped token is refused, as Graph would)."""
    g = FakeGraph(seed=29)

    def issued(token: str) -> str | None:
        a = fake.access.get(token)
        if a is None or a.expires_at <= time.time() or a.grant.revoked:
            return None
        return a.email if "Mail.ReadWrite" in a.grant.scope.split() else None

    g.issuer = issued
    with LoopbackServer(g.app) as server:
        yield g, server.url + "/v1.0"


def deliver(box: Mailbox, subject: str) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    box.deliver(message(SENDER, box.address, subject, date=when), folder="inbox", received=when)


def stored(w: World, account_id: int) -> int:
    return w.services.db.run(
        lambda s: int(
            s.scalar(
                select(func.count(func.distinct(Placement.message_id))).where(
                    Placement.account_id == account_id
                )
            )
            or 0
        )
    )


def graph_worker(w: World, account_id: int, url: str) -> GraphWorker:
    s = w.services
    options = WorkerOptions(
        tokens=token_keeper(s.settings, s.db, s.box), graph=GraphOptions(base_url=url)
    )
    return GraphWorker(s.db, s.box, account_id, options)


async def test_connect_with_microsoft_creates_a_graph_account_that_imports_and_pauses_on_revoke(
    oauth_web: World,
    browser: Any,
    fake: RunningFakeOAuth,
    graph: tuple[FakeGraph, str],
) -> None:
    g, url = graph
    w = oauth_web
    w.services.settings = replace(w.services.settings, microsoft_mail_api="graph")
    assert provider_for(w.services.settings, "microsoft").scopes == MICROSOFT_GRAPH_SCOPES
    fake.user_email = MAILBOX
    box = g.add_mailbox(MAILBOX)
    add_contact(w)
    deliver(box, "first")

    account_id = connect(browser(w.owner), "microsoft")

    row = w.services.db.run(lambda s: s.get_one(MailAccount, account_id))
    assert row.provider == "graph" and row.email == MAILBOX
    assert row.settings["oauth_provider"] == "microsoft"
    assert not [k for k in row.settings if k.startswith(("imap_", "smtp_"))]
    assert w.services.box.open(row.secret)[REFRESH].startswith("rt-")

    await graph_worker(w, account_id, url).run_once()
    assert stored(w, account_id) == 1

    # Graph stops taking the access token before its stated expiry: a 401, one refresh
    # (Microsoft rotates the refresh token), and the round goes on.
    fake.expire_access_tokens()
    before = fake.refresh_requests["microsoft"]
    deliver(box, "second")
    await graph_worker(w, account_id, url).run_once()
    assert fake.refresh_requests["microsoft"] == before + 1
    assert stored(w, account_id) == 2

    # The user removes crmail's access (or changes the password): paused with the hint.
    fake.revoke_user(MAILBOX)
    with pytest.raises(AuthFailed):
        await graph_worker(w, account_id, url).run_once()
    st = w.services.db.run(lambda s: accounts.status(s, account_id))
    assert st.state == "auth_error"
    assert "reconnect" in (st.last_error or "").lower()
    assert stored(w, account_id) == 2
