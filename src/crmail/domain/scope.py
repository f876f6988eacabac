"""Which messages enter the CRM, and what they link to.

Pure rules: given a message's participants and the workspace's address book, decide
whether it is stored (scope "contacts": a participant other than the workspace's own
users is a known contact) and which contacts, leads and deals it links to, with why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    CONTACTS = "contacts"


class SkipReason(StrEnum):
    NO_CONTACT = "no_known_contact"
    ONLY_COWORKERS = "only_workspace_users"
    OUTSIDE_WINDOW = "outside_history_window"
    NO_PARTICIPANTS = "no_participants"


@dataclass(frozen=True, slots=True)
class ContactRef:
    contact_id: int
    lead_id: int | None
    open_deal_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressBook:
    """Snapshot of the workspace's addresses, for deciding without a query per message."""

    contacts: dict[str, ContactRef]  # normalized email -> contact
    own: frozenset[str]  # every workspace user's and mail account's address
    version: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    subject_type: str  # "contact" | "lead" | "deal"
    subject_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    store: bool
    skip_reason: SkipReason | None = None
    links: tuple[Link, ...] = field(default=())


ROLES_IN_ORDER = ("from", "to", "cc", "bcc", "reply_to", "sender")


def decide(participants: dict[str, set[str]], book: AddressBook) -> Decision:
    """``participants`` maps a header role ("from", "to", ...) to its addresses."""
    everyone = set().union(*participants.values()) if participants else set()
    if not everyone:
        return Decision(False, SkipReason.NO_PARTICIPANTS)
    outsiders = everyone - book.own
    if not outsiders:
        return Decision(False, SkipReason.ONLY_COWORKERS)
    links = links_for(participants, book)
    if not links:
        return Decision(False, SkipReason.NO_CONTACT)
    return Decision(True, None, links)


def links_for(participants: dict[str, set[str]], book: AddressBook) -> tuple[Link, ...]:
    """Contacts among the participants, their lead and their open deals, in a stable order."""
    seen: dict[tuple[str, int], Link] = {}

    def add(kind: str, ident: int, reason: str) -> None:
        seen.setdefault((kind, ident), Link(kind, ident, reason))

    for role in ROLES_IN_ORDER:
        for email in sorted(participants.get(role, ())):
            ref = book.contacts.get(email)
            if ref is None or email in book.own:
                continue
            add("contact", ref.contact_id, f"{email} is in {role}")
            if ref.lead_id is not None:
                add("lead", ref.lead_id, f"lead of {email}")
            for deal_id in ref.open_deal_ids:
                add("deal", deal_id, f"open deal of {email}")
    return tuple(seen.values())
