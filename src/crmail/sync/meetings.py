"""Meetings scheduled from the CRM: into the user's calendar, invitations by iMIP mail.

Shared by the API and the web app. Google Calendar sends the invitations itself
(``sendUpdates=all``); for CalDAV calendars crmail sends them as iMIP mail. Each change is written to the calendar first (a PUT
that refuses to overwrite, or replaces only the version we last saw), then recorded in
one transaction with the iMIP message queued on the user's mailbox through the ordinary
sending queue (:func:`crmail.storage.outbound.queue_send`). A crash between the two leaves
the meeting in the calendar, where the next sync round finds it (same UID, no duplicate).

The organizer is the user's mailbox address, so attendees' replies come back to it and
update the attendee's status as they are synced (:mod:`crmail.storage.calendar_replies`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.crypto import SecretBox
from crmail.domain.addresses import normalize_email
from crmail.domain.ical import Attendee, MeetingDraft, Window, meeting_calendar, parse_event
from crmail.errors import InvalidInput
from crmail.storage import calendar as store
from crmail.storage import outbound
from crmail.storage.db import Database
from crmail.storage.models import Contact, ContactEmail, MailAccount
from crmail.storage.views import UserInfo
from crmail.sync.calendar import CalendarOptions, port_for

MAX_ATTENDEES = 100
DEFAULT_LIMITS = outbound.SendLimits()


@dataclass(frozen=True, slots=True)
class MeetingRequest:
    summary: str
    starts_at: datetime
    ends_at: datetime
    contact_ids: tuple[int, ...] = ()
    emails: tuple[str, ...] = ()
    description: str = ""
    location: str = ""
    tzid: str | None = None
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class MeetingResult:
    meeting: store.MeetingView
    #: the iMIP message queued (None: nobody to invite)
    message_id: int | None
    #: mail accounts whose outbox has the invitation (wake their workers)
    accounts: frozenset[int]


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("meeting times need a time zone (an offset or Z)")
    if ends_at <= starts_at:
        raise InvalidInput("a meeting must end after it starts")


def _attendees(s: Session, user: UserInfo, req: MeetingRequest) -> tuple[Attendee, ...]:
    out: dict[str, Attendee] = {}
    for cid in req.contact_ids:
        row = s.execute(
            select(Contact.name, ContactEmail.email)
            .join(ContactEmail, ContactEmail.contact_id == Contact.id)
            .where(Contact.id == cid, Contact.workspace_id == user.workspace_id)
            .order_by(ContactEmail.id)
            .limit(1)
        ).first()
        if row is None:
            raise InvalidInput(f"contact {cid} not found or has no email address")
        out.setdefault(row[1], Attendee(row[1], row[0] or ""))
    for raw in req.emails:
        email = normalize_email(raw)
        if email is None:
            raise InvalidInput(f"{raw!r} is not an email address")
        out.setdefault(email, Attendee(email))
    if len(out) > MAX_ATTENDEES:
        raise InvalidInput(f"a meeting has at most {MAX_ATTENDEES} attendees")
    return tuple(out.values())


def _organizer(s: Session, user: UserInfo) -> Attendee:
    mailbox = s.scalar(
        select(MailAccount.email)
        .where(MailAccount.user_id == user.id, MailAccount.state != "disconnected")
        .order_by(MailAccount.id.desc())
        .limit(1)
    )
    return Attendee(mailbox or user.email, user.name)


def _record_and_invite(
    s: Session,
    user: UserInfo,
    calendar_id: int,
    href: str,
    etag: str | None,
    draft: MeetingDraft,
    stored_ics: bytes,
    method: str,
    subject: str,
    text: str,
    limits: outbound.SendLimits,
    invites: bool,
) -> MeetingResult:
    """``invites``: queue the iMIP message (False: the provider sends invitations)."""
    window = Window(min(draft.starts_at, datetime.now(UTC)), max(draft.ends_at, datetime.now(UTC)))
    pe = parse_event(stored_ics, window)
    assert pe is not None
    event_id, _ = store.record_own_copy(s, user, calendar_id, href, etag, pe, stored_ics.decode())
    message_id: int | None = None
    accounts: frozenset[int] = frozenset()
    to = tuple(a.email for a in draft.attendees if a.email != draft.organizer.email)
    if to and invites:
        queued = outbound.queue_send(
            s,
            user,
            outbound.OutgoingDraft(
                to=to,
                subject=subject,
                text=text,
                calendar=(method, meeting_calendar(draft, method=method)),
            ),
            limits=limits,
        )
        message_id, accounts = queued.message_id, frozenset(queued.account_ids)
    return MeetingResult(store.get_meeting(s, user, event_id), message_id, accounts)


def _invitation_text(draft: MeetingDraft) -> str:
    when = draft.starts_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{draft.summary}", f"When: {when}"]
    if draft.location:
        lines.append(f"Where: {draft.location}")
    if draft.description:
        lines += ["", draft.description]
    return "\n".join(lines)


async def schedule(
    db: Database,
    box: SecretBox,
    options: CalendarOptions,
    user: UserInfo,
    req: MeetingRequest,
    *,
    limits: outbound.SendLimits = DEFAULT_LIMITS,
) -> MeetingResult:
    _check_times(req.starts_at, req.ends_at)
    if not req.summary.strip():
        raise InvalidInput("a meeting needs a title")

    def prepare(
        s: Session,
    ) -> tuple[store.SyncJob, store.CalendarState, Attendee, tuple[Attendee, ...]]:
        job, cal = store.default_calendar(s, user, req.account_id)
        return job, cal, _organizer(s, user), _attendees(s, user, req)

    job, cal, organizer, attendees = await db.read(prepare)
    draft = MeetingDraft(
        uid=f"{uuid.uuid4()}@crmail",
        summary=req.summary.strip()[:500],
        starts_at=req.starts_at,
        ends_at=req.ends_at,
        organizer=organizer,
        attendees=attendees,
        description=req.description,
        location=req.location,
        tzid=req.tzid,
    )
    ics = meeting_calendar(draft)
    port = await port_for(job, box, options)
    try:
        saved = await port.put(cal.url, None, draft.uid, ics.decode(), None)
        invites = not port.sends_invitations
    finally:
        await port.close()
    return await db.write(
        lambda s: _record_and_invite(
            s,
            user,
            cal.id,
            saved.href,
            saved.etag,
            draft,
            saved.ics.encode() if saved.ics else ics,
            "REQUEST",
            f"Invitation: {draft.summary}",
            _invitation_text(draft),
            limits,
            invites,
        )
    )


async def _change(
    db: Database,
    box: SecretBox,
    options: CalendarOptions,
    user: UserInfo,
    meeting_id: int,
    *,
    cancel: bool,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    limits: outbound.SendLimits,
) -> MeetingResult:
    def prepare(s: Session) -> tuple[store.SyncJob, store.OwnCopy, store.MeetingView, str | None]:
        job, copy = store.own_copy(s, user, meeting_id)
        view = store.get_meeting(s, user, meeting_id)
        return job, copy, view, view.tzid

    job, copy, view, tzid = await db.read(prepare)
    if view.status == "cancelled":
        raise InvalidInput("this meeting is cancelled")
    start = starts_at or view.starts_at
    end = ends_at or (start + (view.ends_at - view.starts_at))
    _check_times(start, end)
    draft = MeetingDraft(
        uid=copy.uid,
        summary=view.summary,
        starts_at=start,
        ends_at=end,
        organizer=Attendee(view.organizer_email or user.email, user.name),
        attendees=tuple(Attendee(a.email, a.name, a.partstat, a.role) for a in view.attendees),
        description=view.description,
        location=view.location,
        sequence=copy.sequence + 1,
        status="cancelled" if cancel else "confirmed",
        tzid=tzid,
    )
    if not cancel:
        # A new time asks everyone again.
        draft = replace(
            draft, attendees=tuple(replace(a, partstat="NEEDS-ACTION") for a in draft.attendees)
        )
    ics = meeting_calendar(draft)
    port = await port_for(job, box, options)
    try:
        saved = await port.put(copy.calendar_url, copy.href, copy.uid, ics.decode(), copy.etag)
        invites = not port.sends_invitations
    finally:
        await port.close()
    method = "CANCEL" if cancel else "REQUEST"
    subject = ("Cancelled: " if cancel else "Updated invitation: ") + draft.summary
    return await db.write(
        lambda s: _record_and_invite(
            s,
            user,
            copy.calendar_id,
            saved.href,
            saved.etag,
            draft,
            saved.ics.encode() if saved.ics else ics,
            method,
            subject,
            _invitation_text(draft),
            limits,
            invites,
        )
    )


async def reschedule(
    db: Database,
    box: SecretBox,
    options: CalendarOptions,
    user: UserInfo,
    meeting_id: int,
    starts_at: datetime,
    ends_at: datetime,
    *,
    limits: outbound.SendLimits = DEFAULT_LIMITS,
) -> MeetingResult:
    return await _change(
        db,
        box,
        options,
        user,
        meeting_id,
        cancel=False,
        starts_at=starts_at,
        ends_at=ends_at,
        limits=limits,
    )


async def cancel(
    db: Database,
    box: SecretBox,
    options: CalendarOptions,
    user: UserInfo,
    meeting_id: int,
    *,
    limits: outbound.SendLimits = DEFAULT_LIMITS,
) -> MeetingResult:
    """Cancel: kept in the calendar as STATUS:CANCELLED, and CANCEL sent to the attendees."""
    return await _change(db, box, options, user, meeting_id, cancel=True, limits=limits)
