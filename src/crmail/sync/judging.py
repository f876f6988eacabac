"""Judging messages on their envelope, before any body is fetched: shared by every
provider's inbound sync (IMAP folders, the Gmail API).

What enters the CRM follows the account's scope (:mod:`crmail.domain.scope`); these are
the two lookups a judgement may need that touch the database: whether fresh messages
answer a thread the CRM started, and the contacts auto-create makes first.
"""

from __future__ import annotations

from crmail.domain import autocreate as auto_rule
from crmail.domain.scope import AddressBook
from crmail.mime import Envelope
from crmail.storage import autocreate, crm_threads, mail
from crmail.storage.db import Database


async def in_crm_threads(
    db: Database, account: mail.AccountInfo, fresh: dict[str, Envelope]
) -> set[str]:
    """Dedup keys of ``fresh`` messages in a thread the CRM started from this account's
    current address: one query for the whole batch."""
    refs = {r for e in fresh.values() for r in (*e.in_reply_to, *e.references)}
    if not refs:
        return set()
    ws, address = account.workspace_id, account.email
    ok_ids = await db.read(lambda s: crm_threads.refs_in_crm_threads(s, ws, refs, address))
    # A batch may hold a chain (reply to a reply) whose middle is not stored yet:
    # a message that answers one joining the thread joins it too.
    keys: set[str] = set()
    grew = True
    while grew:
        grew = False
        for key, e in fresh.items():
            if key in keys or not any(r in ok_ids for r in (*e.in_reply_to, *e.references)):
                continue
            keys.add(key)
            if e.message_id:
                ok_ids.add(e.message_id)
            grew = True
    return keys


async def auto_create(
    db: Database,
    account: mail.AccountInfo,
    options: auto_rule.Options,
    fresh: list[Envelope],
    book: AddressBook,
    blocklist: auto_rule.Blocklist,
) -> AddressBook:
    """Create the contacts these messages call for, in one write; the book with them."""
    wanted: dict[str, str] = {}
    for env in fresh:
        for email, name in auto_rule.new_contacts(
            autocreate.mail_of(env),
            account_email=account.email,
            options=options,
            own=book.own,
            known=book.contacts,
            blocklist=blocklist,
        ).items():
            wanted.setdefault(email, name)
    if not wanted:
        return book
    ws = account.workspace_id
    created = await db.write(lambda s: autocreate.create_contacts(s, ws, wanted))
    return autocreate.with_contacts(book, created)
