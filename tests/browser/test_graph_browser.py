"""Connect with Microsoft in a real browser, in the Microsoft Graph mode: consent at the
fake identity platform, the import's progress on the account page, then Done in the CRM
Inbox marks the message read and moves it to Archive in the fake Graph mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from crmail.storage import crm
from crmail.sync.graph.options import GraphOptions
from tests.browser import flows
from tests.browser.conftest import Crm, shot
from tests.factories import message
from tests.fakes.graph import FakeGraph
from tests.fakes.oauth import RunningFakeOAuth
from tests.fakes.server import LoopbackServer

pytestmark = pytest.mark.browser

MAILBOX = "megan@contoso.example.test"
CUSTOMER = "buyer@client.example.test"


@pytest.fixture
def graph() -> Iterator[tuple[FakeGraph, str]]:
    g = FakeGraph(seed=9)
    with LoopbackServer(g.app) as server:
        yield g, server.url + "/v1.0"


def test_connect_with_microsoft_imports_through_graph_and_done_reaches_outlook(
    live: Crm, oauth: RunningFakeOAuth, graph: tuple[FakeGraph, str], page: object
) -> None:
    g, graph_url = graph
    flows.sign_in_with(live, oauth, "microsoft", microsoft_mail_api="graph")
    sync = live.services.sync
    sync.options = replace(sync.options, graph=GraphOptions(base_url=graph_url))  # type: ignore[attr-defined]
    oauth.auto_consent = False
    oauth.user_email = MAILBOX
    box = g.add_mailbox(MAILBOX)
    # Graph honours the access tokens the identity platform's token endpoint hands out.
    g.issuer = lambda token: MAILBOX if token in oauth.live_access_tokens(MAILBOX) else None
    live.services.db.run(
        lambda s: crm.create_contact(s, live.workspace_id, name="Buyer", emails=[CUSTOMER])
    )
    asked = box.deliver(message(CUSTOMER, MAILBOX, "Pricing via Outlook", msgid="<m1@client.test>"))
    private = box.deliver(message("mum@family.test", MAILBOX, "Sunday lunch"))

    p = page
    flows.connect_through_consent(
        p,
        live,
        "Microsoft",
        f"{oauth.url}/microsoft/*/oauth2/v2.0/authorize*",
        consent_shot="graph-00-consent",
    )
    row = flows.account_of(live, MAILBOX)
    assert row is not None and row.provider == "graph"
    flows.wait_imported(p)
    shot(p, "graph-01-imported")
    mime_fetched = {r.path for r in g.requests if r.path.endswith("/$value")}
    assert any(asked.id in path for path in mime_fetched)
    assert not any(private.id in path for path in mime_fetched)

    flows.done_in_inbox(p, live, "Pricing via Outlook", absent="Sunday lunch")
    shot(p, "graph-02-done")
    archive = box.folder("archive").id

    def archived() -> bool:
        stored = box.messages[asked.id]
        return stored.is_read and stored.folder_id == archive

    flows.wait_until(archived)
