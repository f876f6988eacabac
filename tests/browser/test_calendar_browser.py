"""Calendar in a real browser: connect a Radicale calendar in Settings → Calendar, then
schedule a meeting from a contact's page; it shows on the contact's timeline and is in
the CalDAV server for any other client, with the contact as attendee."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import caldav
import pytest

from crmail.storage import accounts, crm
from tests.browser.conftest import Crm, shot, sign_in
from tests.servers.radicale import Radicale

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    with Radicale() as server:
        yield server


def test_connect_calendar_and_schedule_from_a_contact(
    live: Crm, page: object, radicale: Radicale
) -> None:
    p = page
    # Radicale speaks plain http on loopback (CRMAIL_CALENDAR_ALLOW_HTTP in a deployment).
    live.services.settings = replace(live.services.settings, calendar_allow_http=True)
    radicale.add_user("olivia", "pw")
    other = caldav.DAVClient(url=radicale.url, username="olivia", password="pw", require_tls=False)
    work = other.principal().make_calendar(name="Work", cal_id="work")
    ann = live.services.db.run(
        lambda s: (
            crm.create_contact(
                s, live.workspace_id, name="Ann Client", emails=["ann@client.test"]
            ).id
        )
    )
    # The invitation is queued on the owner's mailbox (not reachable here: it stays queued).
    live.services.db.run(
        lambda s: accounts.create_account(
            s,
            workspace_id=live.workspace_id,
            user_id=live.owner.id,
            email=live.owner.email,
            provider="imap",
            settings={"imap_host": "imap.invalid"},
            secret=live.services.box.seal({"password": "x"}),
        )
    )

    sign_in(p, live.url, live.owner.email)
    p.goto(f"{live.url}/settings/calendar")  # type: ignore[attr-defined]
    p.fill("input[name=url]", radicale.url)  # type: ignore[attr-defined]
    p.fill("input[name=username]", "olivia")  # type: ignore[attr-defined]
    p.fill("input[name=password]", "pw")  # type: ignore[attr-defined]
    p.click("#connect button.primary")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/settings/calendar")  # type: ignore[attr-defined]
    assert p.locator("td", has_text="Work").count() == 1  # type: ignore[attr-defined]
    shot(p, "calendar-01-connected")

    p.goto(f"{live.url}/contacts/{ann}")  # type: ignore[attr-defined]
    p.fill("form[data-schedule] input[name=summary]", "Pricing walkthrough")  # type: ignore[attr-defined]
    p.fill("form[data-schedule] input[name=starts_at]", "2030-01-15T10:00")  # type: ignore[attr-defined]
    p.fill("form[data-schedule] input[name=minutes]", "45")  # type: ignore[attr-defined]
    p.click("form[data-schedule] button.primary")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/contacts/{ann}*")  # type: ignore[attr-defined]
    item = p.locator("ol.activity li[data-meeting]", has_text="Pricing walkthrough")  # type: ignore[attr-defined]
    assert item.count() == 1
    assert "ann@client.test" in item.inner_text() or "Ann Client" in item.inner_text()
    shot(p, "calendar-02-meeting-on-contact")

    events = work.search(event=True)
    assert len(events) == 1
    comp = events[0].icalendar_component
    assert str(comp["SUMMARY"]) == "Pricing walkthrough"
    assert str(comp["ATTENDEE"]).lower() == "mailto:ann@client.test"
    assert (comp["DTEND"].dt - comp["DTSTART"].dt).total_seconds() == 45 * 60
