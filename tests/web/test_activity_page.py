"""A contact's page lists its mail and meetings as one list, newest first; Settings →
Calendar names the calendars of Google and Microsoft sign-ins and says what they lack."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from crmail.storage import crm
from tests.api.conftest import Actor, World
from tests.api.test_mail_routes import T0
from tests.factories import linked_meeting, message
from tests.web.conftest import Browser


def test_the_contact_page_interleaves_mail_and_meetings_by_date(
    web: World, browser: Callable[[Actor], Browser]
) -> None:
    ws = web.owner.workspace_id
    ivy = web.services.db.run(
        lambda s: crm.create_contact(s, ws, name="Ivy", emails=["ivy@client.test"]).id
    )
    box = web.mailbox(web.owner)
    for subject, hours in (("Older mail", 0), ("Newer mail", 48)):
        web.deliver(
            box,
            message(
                "Ivy <ivy@client.test>",
                web.owner.email,
                subject,
                "hi",
                date=T0 + timedelta(hours=hours),
            ),
        )

    web.services.db.run(
        lambda s: linked_meeting(
            s,
            ws,
            ivy,
            uid="demo",
            summary="Demo call",
            start=T0 + timedelta(hours=24),
            length=timedelta(hours=1),
            reason="ivy@client.test is the attendee",
        )
    )

    page = browser(web.owner).get(f"/contacts/{ivy}").text

    order = [m.group(0) for m in re.finditer(r"Newer mail|Demo call|Older mail", page)]
    assert order == ["Newer mail", "Demo call", "Older mail"]
    assert "ivy@client.test is the attendee" in page


def test_settings_say_in_words_that_a_google_grant_lacks_the_calendar(
    web: World, browser: Callable[[Actor], Browser]
) -> None:
    from crmail.storage import calendar as store

    web.mailbox(web.owner)  # an IMAP mailbox: no calendar comes with it
    me = web.services.db.run(lambda s: store.list_accounts(s, _user(web)))
    assert me == []

    def gmail_account(s: Session) -> None:
        from crmail.storage import accounts

        accounts.create_account(
            s,
            workspace_id=web.owner.workspace_id,
            user_id=web.owner.id,
            email="owner@gmail.test",
            provider="gmail",
            settings={"oauth_provider": "google"},
            secret=web.services.box.seal({}),
        )

    web.services.db.run(gmail_account)
    assert web.services.db.run(lambda s: store.ensure_grant_calendars(s, web.services.box)) == 1
    [account] = web.services.db.run(lambda s: store.list_accounts(s, _user(web)))
    web.services.db.run(
        lambda s: store.record_account_result(
            s,
            account.id,
            "crmail was not given access to this Google account's calendar. Reconnect the "
            "account with Google and allow the calendar permission.",
            "calendar_scope_missing",
        )
    )

    page = browser(web.owner).get("/settings/calendar").text

    assert "Google Calendar, through your Google sign-in" in page
    assert "Reconnect the account with Google and allow the calendar permission." in page


def _user(web: World) -> Any:
    from crmail.storage.crm import UserInfo

    o = web.owner
    return UserInfo(o.id, o.workspace_id, o.email, "Owner", "member")
