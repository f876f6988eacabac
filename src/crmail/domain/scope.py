"""Which messages enter the CRM, and what they link to.

Pure rules: given a message's participants and the workspace's address book, decide
whether it is stored and which contacts, leads and deals it links to, with why.

An account's scope says what enters the CRM from its mailbox:
- "contacts" (default): a participant other than the workspace's own users is a known
  contact (Freshsales' contacts-only fetching, seed 004);
- "crm_threads": the message belongs to a thread the CRM started from this account's
  current address (HighLevel, seeds 001/002); the caller finds that out in one query
  per batch and passes ``in_crm_thread``;
- "folders": everything in the synced folders (Onpipeline, seed 003).
Links are always the contacts known *at arrival*: nothing links retroactively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    CONTACTS = "contacts"
    CRM_THREADS = "crm_threads"
    FOLDERS = "folders"

    @classmethod
    def of(cls, value: object) -> Scope:
        """The scope stored in an account's settings; anything unknown is the default."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.CONTACTS


class SkipReason(StrEnum):
    NO_CONTACT = "no_known_contact"
    ONLY_COWORKERS = "only_workspace_users"
    OUTSIDE_WINDOW = "outside_history_window"
    NO_PARTICIPANTS = "no_participants"
    NOT_CRM_THREAD = "not_a_crm_thread"


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


def decide_in_scope(
    scope: Scope,
    participants: dict[str, set[str]],
    book: AddressBook,
    *,
    in_crm_thread: bool = False,
) -> Decision:
    """:func:`decide` for an account's scope (see the module docstring)."""
    if scope is Scope.CONTACTS:
        return decide(participants, book)
    if scope is Scope.CRM_THREADS and not in_crm_thread:
        return Decision(False, SkipReason.NOT_CRM_THREAD)
    # A CRM thread syncs whoever writes in it, and a synced folder keeps everything:
    # neither needs a contact, both link to the contacts known now.
    return Decision(True, None, links_for(participants, book))


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
