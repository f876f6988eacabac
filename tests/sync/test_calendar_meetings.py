"""Meetings scheduled from the CRM: in the user's calendar on Radicale (seen by another
CalDAV client), invitations as iMIP mail delivered to the attendee's Dovecot mailbox,
and the attendee's reply, synced from the user's mailbox, reflected on the meeting."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import caldav
import icalendar
import pytest

from crmail.services import Services
from crmail.storage import calendar as store
from crmail.storage.crm import UserInfo
from crmail.sync.calendar import CalendarOptions, sync_account
from crmail.sync.meetings import MeetingRequest, cancel, reschedule, schedule
from crmail.sync.worker import AccountWorker
from tests.factories import World, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.servers.radicale import Radicale
from tests.sync.test_inbound import FAST
from tests.sync.test_sending import smtp_settings

OPTIONS = CalendarOptions(allow_plain_http=True)


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    with Radicale() as server:
        yield server


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


def inbox(dovecot: Dovecot, user: str) -> list[EmailMessage]:
    root = dovecot.maildir(user)
    files = sorted([*root.glob("new/*"), *root.glob("cur/*")])
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in files
    ]


def calendar_part(msg: EmailMessage) -> icalendar.Calendar:
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            assert part.get_param("method") in ("REQUEST", "CANCEL")
            return icalendar.Calendar.from_ical(part.get_payload(decode=True))
    raise AssertionError("no text/calendar part")


async def test_meeting_from_the_crm_lands_in_the_calendar_invites_and_takes_the_reply(
    services: Services,
    world: World,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
    radicale: Radicale,
) -> None:
    customer = dovecot.add_user("bob@customer.example", "pw-bob")
    bob = world.contact(customer.email, name="Bob Buyer")
    me = world.user(mailbox.email, "Rep")
    account = world.connect(me, mailbox, **smtp_settings(smtp_relay))
    user = UserInfo(me, world.workspace_id, mailbox.email, "Rep", "member")
    login = mailbox.email.split("@")[0]
    radicale.add_user(login, "pw")
    other = caldav.DAVClient(url=radicale.url, username=login, password="pw", require_tls=False)
    other_cal = other.principal().make_calendar(name="Work", cal_id="work")
    cal_account = services.db.run(
        lambda s: (
            store.add_account(
                s, user, services.box, url=radicale.url, username=login, password="pw"
            ).id
        )
    )
    job = services.db.run(lambda s: store.job_for(s, user, cal_account))
    await sync_account(services.db, services.box, job, OPTIONS)

    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0, second=0)
    made = await schedule(
        services.db,
        services.box,
        OPTIONS,
        user,
        MeetingRequest(
            "Demo call",
            start,
            start + timedelta(minutes=45),
            contact_ids=(bob,),
            location="https://meet.example/abc",
            tzid="Europe/Berlin",
        ),
    )

    # Another CalDAV client sees it, organizer and attendee included.
    seen = other_cal.get_event_by_uid(made.meeting.uid).icalendar_component
    assert str(seen["ORGANIZER"]).lower() == f"mailto:{mailbox.email}"
    assert [str(a).lower() for a in [seen["ATTENDEE"]]] == [f"mailto:{customer.email}"]
    assert seen["DTSTART"].dt.astimezone(UTC) == start
    assert seen["DTSTART"].params.get("TZID") == "Europe/Berlin"
    # On the contact's timeline at once.
    page = services.db.run(lambda s: store.meeting_timeline(s, user, "contact", bob))
    assert [i.meeting.id for i in page.items] == [made.meeting.id]

    # The invitation goes out through the user's mailbox (the sending queue).
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    invites = inbox(dovecot, customer.email)
    assert len(invites) == 1
    body = calendar_part(invites[0])
    assert str(body["METHOD"]) == "REQUEST"
    assert str(body.walk("VEVENT")[0]["UID"]) == made.meeting.uid

    # Bob accepts: his client mails an iMIP REPLY to the organizer.
    reply = icalendar.Calendar()
    reply.add("prodid", "-//bob//EN")
    reply.add("version", "2.0")
    reply.add("method", "REPLY")
    ev = icalendar.Event()
    ev.add("uid", made.meeting.uid)
    ev.add("dtstamp", datetime.now(UTC))
    ev.add("dtstart", start)
    att = icalendar.vCalAddress(f"mailto:{customer.email}")
    att.params["PARTSTAT"] = "ACCEPTED"
    ev.add("attendee", att)
    ev.add("organizer", icalendar.vCalAddress(f"mailto:{mailbox.email}"))
    reply.add_component(ev)
    msg = EmailMessage()
    msg["From"] = customer.email
    msg["To"] = mailbox.email
    msg["Subject"] = "Accepted: Demo call"
    msg["Message-ID"] = "<reply-1@customer.example>"
    msg.set_content("Bob accepted.")
    msg.add_alternative(
        reply.to_ical(), maintype="text", subtype="calendar", params={"method": "REPLY"}
    )
    dovecot.deliver(mailbox.email, msg.as_bytes(), sender=customer.email)
    await AccountWorker(services.db, services.box, account, FAST).run_once()

    answered = services.db.run(lambda s: store.get_meeting(s, user, made.meeting.id))
    assert [(a.email, a.partstat) for a in answered.attendees] == [(customer.email, "ACCEPTED")]

    # Another client edits the calendar copy (same SEQUENCE): the answer stands; an
    # answer written on the server itself (a scheduling server, a client) is taken.
    obj = other_cal.get_event_by_uid(made.meeting.uid)
    obj.icalendar_component["LOCATION"] = "Room 2"
    obj.save(increase_seqno=False)
    await sync_account(services.db, services.box, job, OPTIONS)
    edited = services.db.run(lambda s: store.get_meeting(s, user, made.meeting.id))
    assert (edited.location, edited.attendees[0].partstat) == ("Room 2", "ACCEPTED")
    obj = other_cal.get_event_by_uid(made.meeting.uid)
    obj.icalendar_component["ATTENDEE"].params["PARTSTAT"] = "DECLINED"
    obj.save(increase_seqno=False)
    await sync_account(services.db, services.box, job, OPTIONS)
    declined = services.db.run(lambda s: store.get_meeting(s, user, made.meeting.id))
    assert declined.attendees[0].partstat == "DECLINED"

    # Rescheduled: moved in the calendar, everyone asked again, an updated REQUEST sent.
    later = start + timedelta(days=1)
    moved = await reschedule(
        services.db, services.box, OPTIONS, user, made.meeting.id, later, later + timedelta(hours=1)
    )
    assert moved.meeting.starts_at == later
    assert [a.partstat for a in moved.meeting.attendees] == ["NEEDS-ACTION"]
    seen = other_cal.get_event_by_uid(made.meeting.uid).icalendar_component
    assert seen["DTSTART"].dt.astimezone(UTC) == later
    assert int(seen["SEQUENCE"]) == 1

    # Cancelled: kept in the calendar and on the timeline as cancelled, CANCEL sent.
    gone = await cancel(services.db, services.box, OPTIONS, user, made.meeting.id)
    assert gone.meeting.status == "cancelled"
    seen = other_cal.get_event_by_uid(made.meeting.uid).icalendar_component
    assert str(seen["STATUS"]) == "CANCELLED"
    await AccountWorker(services.db, services.box, account, FAST).run_once()
    methods = [str(calendar_part(m)["METHOD"]) for m in inbox(dovecot, customer.email)]
    assert sorted(methods) == ["CANCEL", "REQUEST", "REQUEST"]

    # The next sync round finds nothing new: the CRM's own writes are already stored.
    again = await sync_account(services.db, services.box, job, OPTIONS)
    assert (again.stored, again.fetched) == (0, 0)
