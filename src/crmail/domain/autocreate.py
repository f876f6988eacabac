"""Which new addresses of a message become contacts (Freshsales' "auto-create contacts", seed 004).

Pure rules; the writes are in :mod:`crmail.storage.autocreate`. Off by default per account:

- ``auto_create_contacts``: new addresses in the To/Cc/Bcc of mail the user *sends* (from
  the CRM, found in Sent, or Bcc'd to the drop address);
- ``auto_create_incoming`` (with the first): also the To/Cc/Bcc of mail the user receives.
  As in the seed, the sender of an incoming message is not created: a stranger writing
  in is exactly the private mail a CRM must not pull in.

Never created, whatever the flags:
- the workspace's own users and mail accounts;
- addresses and ``@domain`` entries on the workspace blocklist
  (``Workspace.settings["auto_create_blocklist"]``);
- anything in bulk or automated mail (List-Id, List-Unsubscribe, Precedence,
  Auto-Submitted: ``Envelope.is_bulk``): its recipients are a list, not people;
- the no-reply mailboxes in :data:`NO_REPLY_LOCAL_PARTS` — a deliberately short list of
  names that are never a person, so it cannot swallow real contacts.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

from crmail.domain.addresses import email_domain, normalize_email

#: local parts (before any "+tag") that never belong to a person
NO_REPLY_LOCAL_PARTS = frozenset(
    {"noreply", "no-reply", "donotreply", "do-not-reply", "mailer-daemon", "postmaster"}
)

#: where a workspace keeps its blocklist
BLOCKLIST_SETTING = "auto_create_blocklist"


@dataclass(frozen=True, slots=True)
class Options:
    """An account's auto-create switches, from ``MailAccount.settings``."""

    outgoing: bool = False
    incoming: bool = False

    @classmethod
    def of(cls, settings: Mapping[str, object]) -> Options:
        on = bool(settings.get("auto_create_contacts", False))
        # "incoming" extends "outgoing": alone it does nothing (the form shows it nested).
        return cls(on, on and bool(settings.get("auto_create_incoming", False)))

    @property
    def any(self) -> bool:
        return self.outgoing or self.incoming


def blocklist_entry(raw: str) -> str | None:
    """``raw`` as the blocklist stores it (an address, or ``@domain``); None if it is neither."""
    entry = raw.strip().lower()
    if entry.startswith("@") and len(entry) > 1:
        # The domain is checked as an address at it would be.
        return entry if normalize_email(f"x{entry}") is not None else None
    return normalize_email(entry)


@dataclass(frozen=True, slots=True)
class Blocklist:
    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: object) -> Blocklist:
        """``["boss@x.test", "@competitor.test"]``; malformed entries are ignored."""
        addresses: set[str] = set()
        domains: set[str] = set()
        for raw in entries if isinstance(entries, list | tuple) else ():
            entry = blocklist_entry(str(raw))
            if entry is None:
                continue
            if entry.startswith("@"):
                domains.add(entry[1:])
            else:
                addresses.add(entry)
        return cls(frozenset(addresses), frozenset(domains))

    def blocks(self, email: str) -> bool:
        # An exact domain only: "@x.test" does not block "a@mail.x.test", so a broad
        # entry cannot silently hide a customer's subsidiary.
        return email in self.addresses or email_domain(email) in self.domains


def is_no_reply(email: str) -> bool:
    local = email.rpartition("@")[0].split("+", 1)[0].lower()
    return local in NO_REPLY_LOCAL_PARTS


@dataclass(frozen=True, slots=True)
class Mail:
    """What the rule needs to know about one message."""

    from_: tuple[str, ...]
    #: To, Cc and Bcc as (email, display name)
    recipients: tuple[tuple[str, str], ...]
    is_bulk: bool


def new_contacts(
    mail: Mail,
    *,
    account_email: str,
    options: Options,
    own: Container[str],
    known: Container[str],
    blocklist: Blocklist,
) -> dict[str, str]:
    """New contacts to create for ``mail``: normalized email -> display name."""
    if mail.is_bulk or not options.any:
        return {}
    # Outgoing: the user wrote it, from this account's address.
    outgoing = account_email.lower() in {a.lower() for a in mail.from_}
    if not (options.outgoing if outgoing else options.incoming):
        return {}
    out: dict[str, str] = {}
    for raw, name in mail.recipients:
        email = normalize_email(raw)
        if (
            email is None
            or email in out
            or email in own
            or email in known
            or blocklist.blocks(email)
            or is_no_reply(email)
        ):
            continue
        out[email] = name.strip()
    return out
