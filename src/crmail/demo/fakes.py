"""`crmail demo --fake-providers`: fake Google (OAuth, Gmail API, Pub/Sub push) and fake
Microsoft (identity platform, Graph) on loopback, so "Connect with Google" and "Connect
with Microsoft" can be clicked in the demo's web app.

The fakes are the test suite's (``tests/fakes/``): they exist in a checkout of the
repository, not in an installed package, and are imported from there only when the flag
is given. Their mailboxes hold mail from the demo's contacts, and their consent pages
stand in for Google's and Microsoft's.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmail.errors import InvalidInput

GOOGLE_MAILBOX = "you@gmail.demo.test"
MICROSOFT_MAILBOX = "you@outlook.demo.test"
PUSH_TOPIC = "projects/crmail-demo/topics/crmail-gmail"


def repo_root() -> Path | None:
    """The checkout holding ``tests/fakes/``: this file's (an editable install) or the
    working directory's."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "tests" / "fakes" / "gmail.py").is_file():
            return root
    return None


def check_available() -> Path:
    """The checkout's root, or a one-line error when the fakes are not there."""
    root = repo_root()
    if root is None:
        raise InvalidInput(
            "--fake-providers needs crmail's repository checkout: tests/fakes/ was not found",
            hint="run it from the root of a git clone of crmail",
        )
    return root


def _import_fakes() -> dict[str, Any]:
    root = check_available()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return {
        name: importlib.import_module(f"tests.fakes.{name}")
        for name in ("gmail", "gcal", "graph", "graph_calendar", "oauth", "server", "pubsub")
    }


@dataclass(frozen=True, slots=True)
class FakeProviders:
    #: the settings that point crmail at the fakes
    settings: dict[str, object]
    google_consent: str
    microsoft_consent: str
    #: (address, seeded messages) of each fake mailbox
    google_mailbox: tuple[str, int]
    microsoft_mailbox: tuple[str, int]
    #: delivers one message to the fake Gmail mailbox (pushed to crmail)
    deliver_gmail: Callable[[bytes], None]


def _live(oauth: Any) -> Callable[[str], str | None]:
    """The fake API trusts the access tokens its identity fake issued (as the real ones)."""

    def issued(token: str) -> str | None:
        a = oauth.access.get(token)
        if a is None or a.expires_at <= time.time() or a.grant.revoked:
            return None
        return str(a.email)

    return issued


@contextlib.contextmanager
def fake_providers(
    public_url: str, seed_mail: list[tuple[datetime, Callable[[str], bytes]]]
) -> Iterator[FakeProviders]:
    """Start the fakes; ``seed_mail``: (when, to -> raw message) for both mailboxes."""
    fakes = _import_fakes()
    with contextlib.ExitStack() as stack:
        google = stack.enter_context(fakes["oauth"].RunningFakeOAuth())
        microsoft = stack.enter_context(fakes["oauth"].RunningFakeOAuth())
        for fake, address in ((google, GOOGLE_MAILBOX), (microsoft, MICROSOFT_MAILBOX)):
            fake.user_email = address
            fake.auto_consent = False  # the consent page is part of the show

        gmail = fakes["gmail"].FakeGmail(seed=1)
        gmail.authorize = _live(google)
        gmail_url = stack.enter_context(fakes["server"].LoopbackServer(gmail.app)).url
        push_endpoint = f"{public_url}/api/push/gmail"
        gmail.pubsub.audience = push_endpoint
        gmail.push_url = push_endpoint
        gbox = gmail.add_mailbox(GOOGLE_MAILBOX)
        # The accounts' calendars (the grants carry the calendar scopes): empty, synced.
        fakes["gcal"].FakeGoogleCalendar(gmail).add_calendar(GOOGLE_MAILBOX)

        graph = fakes["graph"].FakeGraph(seed=2)
        graph.issuer = _live(microsoft)
        graph_url = stack.enter_context(fakes["server"].LoopbackServer(graph.app)).url
        mbox = graph.add_mailbox(MICROSOFT_MAILBOX)
        fakes["graph_calendar"].FakeGraphCalendar(graph)

        for when, make in seed_mail:
            gbox.deliver(make(GOOGLE_MAILBOX), internal_date=when)
            mbox.deliver(make(MICROSOFT_MAILBOX), received=when)

        g_client = google.register("google", f"{public_url}/oauth/google/callback")
        m_client = microsoft.register("microsoft", f"{public_url}/oauth/microsoft/callback")
        settings: dict[str, object] = {
            "public_url": public_url,
            "google_client_id": g_client.client_id,
            "google_client_secret": g_client.secret,
            "google_auth_base": f"{google.url}/google",
            "gmail_api_url": gmail_url,
            "gmail_push_topic": PUSH_TOPIC,
            "gmail_push_service_account": gmail.pubsub.service_account,
            "gmail_push_audience": push_endpoint,
            "google_certs_url": gmail_url + fakes["pubsub"].CERTS_PATH,
            "microsoft_client_id": m_client.client_id,
            "microsoft_client_secret": m_client.secret,
            "microsoft_auth_base": f"{microsoft.url}/microsoft",
            "graph_api_url": graph_url + "/v1.0",
        }

        def deliver_gmail(raw: bytes) -> None:
            gbox.deliver(raw, internal_date=datetime.now(UTC))

        yield FakeProviders(
            settings,
            google.url,
            microsoft.url,
            (GOOGLE_MAILBOX, len(seed_mail)),
            (MICROSOFT_MAILBOX, len(seed_mail)),
            deliver_gmail,
        )
