"""Which calendar events enter the CRM, what they link to, and whose attendees become contacts.

The mail rules (:mod:`crmail.domain.scope`, :mod:`crmail.domain.autocreate`) applied to a
meeting: the organizer and the attendees are its participants.

- Kept when a participant other than the workspace's users is a known contact, or when
  the calendar account auto-creates contacts (then its new attendees become contacts
  first, and the meeting links to them).
- Private events (CLASS:PRIVATE or CONFIDENTIAL) are kept only for a known contact:
  auto-create never turns a private appointment into CRM records.
- Never participants: rooms and resources (CUTYPE=ROOM/RESOURCE, resource-calendar
  addresses); never created: the blocklist, no-reply organizers' meetings (automated
  invitations), the workspace's own addresses.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum

from crmail.domain.autocreate import Blocklist, is_no_reply
from crmail.domain.ical import Attendee, ParsedEvent
from crmail.domain.scope import AddressBook, Link

#: attendee types that are not people
NOT_PEOPLE = frozenset({"ROOM", "RESOURCE"})
#: domains whose addresses are meeting rooms and equipment
RESOURCE_DOMAINS = ("resource.calendar.google.com",)


class EventSkip(StrEnum):
    NO_PARTICIPANTS = "no_participants"
    ONLY_COWORKERS = "only_workspace_users"
    NO_CONTACT = "no_known_contact"
    PRIVATE = "private_without_contact"
    OUTSIDE_WINDOW = "outside_window"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class EventDecision:
    store: bool
    skip: EventSkip | None = None
    links: tuple[Link, ...] = ()
    #: new contacts to create first (email -> display name)
    create: dict[str, str] | None = None


def is_resource(a: Attendee) -> bool:
    return a.cutype in NOT_PEOPLE or a.email.endswith(RESOURCE_DOMAINS)


def people(event: ParsedEvent) -> list[tuple[str, Attendee]]:
    """(role, person) for the organizer and every attendee who is a person."""
    out: list[tuple[str, Attendee]] = []
    if event.organizer is not None and not is_resource(event.organizer):
        out.append(("organizer", event.organizer))
    out.extend(("attendee", a) for a in event.attendees if not is_resource(a))
    return out


def meeting_links(event: ParsedEvent, book: AddressBook) -> tuple[Link, ...]:
    seen: dict[tuple[str, int], Link] = {}

    def add(kind: str, ident: int, reason: str) -> None:
        seen.setdefault((kind, ident), Link(kind, ident, reason[:200]))

    for role, person in people(event):
        ref = book.contacts.get(person.email)
        if ref is None or person.email in book.own:
            continue
        add("contact", ref.contact_id, f"{person.email} is the {role}")
        if ref.lead_id is not None:
            add("lead", ref.lead_id, f"lead of {person.email}")
        for deal_id in ref.open_deal_ids:
            add("deal", deal_id, f"open deal of {person.email}")
    return tuple(seen.values())


def new_attendee_contacts(
    event: ParsedEvent, *, own: Container[str], known: Container[str], blocklist: Blocklist
) -> dict[str, str]:
    if event.private:
        return {}
    if event.organizer is not None and is_no_reply(event.organizer.email):
        return {}
    out: dict[str, str] = {}
    for _, person in people(event):
        email = person.email
        if (
            email in out
            or email in own
            or email in known
            or blocklist.blocks(email)
            or is_no_reply(email)
        ):
            continue
        out[email] = person.name
    return out


def decide_event(
    event: ParsedEvent,
    book: AddressBook,
    *,
    auto_create: bool,
    blocklist: Blocklist,
) -> EventDecision:
    everyone = {p.email for _, p in people(event)}
    if not everyone:
        return EventDecision(False, EventSkip.NO_PARTICIPANTS)
    if not everyone - book.own:
        return EventDecision(False, EventSkip.ONLY_COWORKERS)
    links = meeting_links(event, book)
    if links:
        return EventDecision(True, None, links)
    if event.private:
        return EventDecision(False, EventSkip.PRIVATE)
    if auto_create:
        wanted = new_attendee_contacts(
            event, own=book.own, known=book.contacts, blocklist=blocklist
        )
        if wanted:
            return EventDecision(True, None, (), wanted)
    return EventDecision(False, EventSkip.NO_CONTACT)
