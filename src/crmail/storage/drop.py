"""The BCC drop address: mail a user Bccs or forwards into the CRM (Freshsales, seed 004).

Each account gets ``<drop_token>@<drop_domain>``; crmail's own SMTP listener
(:mod:`crmail.sync.dropbox`) accepts mail for known tokens and stores it here, through
the same write path as synced mail, with ``origin="bcc"``. It is the way in for 1-way
accounts, and open to 2-way accounts too (a user may always Bcc the CRM).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmail.domain.account import AccountState
from crmail.domain.scope import links_for
from crmail.mime import Envelope, ParsedMessage, parse_envelope, parse_message
from crmail.mime.keys import envelope_key, envelope_roles
from crmail.mime.parse import extract_part
from crmail.storage import autocreate, mail, notify
from crmail.storage.models import MailAccount, Message

#: what webhooks name as the "folder" of mail that came in through the drop address
DROP_FOLDER = "bcc"


def new_token() -> str:
    """80 random bits, lowercase base32: mail systems and people may lowercase the local
    part of an address, so the token must survive that (matching is case-insensitive)."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def drop_address(s: Session, account_id: int, domain: str) -> str:
    """The account's drop address; its token is created on first need."""
    a = s.get_one(MailAccount, account_id)
    if a.drop_token is None:
        a.drop_token = new_token()
        s.flush()
    return f"{a.drop_token}@{domain.lower()}"


def account_for_token(s: Session, token: str) -> int | None:
    """The account a token belongs to; None for a disconnected one (it syncs nothing,
    seeds 001/002) or an unknown token."""
    return s.scalar(
        select(MailAccount.id).where(
            MailAccount.drop_token == token.lower(),
            MailAccount.state != AccountState.DISCONNECTED.value,
        )
    )


@dataclass(frozen=True, slots=True)
class Dropped:
    message_id: int
    #: False: the message was in the CRM already (synced, or Bcc'd twice)
    stored: bool


def store_drop(s: Session, account_id: int, raw: bytes) -> Dropped:
    """Store one message received at the account's drop address.

    Links follow the contact rules, applied to the people the mail is about: for a
    forward that carries the original as a message/rfc822 part, the original's
    participants; otherwise the message's own, less the user (who Bcc'd it). Unparsable
    mail is kept as raw bytes like any other (``parse_failed``).
    """
    a = s.get_one(MailAccount, account_id)
    ws = a.workspace_id
    parsed = parse_message(raw)
    env = parsed.envelope
    book = mail.address_book(s, ws)
    # Mail the user sent and Bcc'd to the CRM is outgoing mail: auto-create applies.
    book = autocreate.for_message(s, account_id, env, book)
    inner = forwarded_envelope(raw, parsed)
    participants = envelope_roles(inner) if inner is not None else envelope_roles(env)
    me = a.email.lower()
    participants = {role: {e for e in addrs if e != me} for role, addrs in participants.items()}
    key = envelope_key(env, raw)
    ids = mail.store_messages(
        s, ws, [mail.NewMessage(key, parsed, raw, links_for(participants, book))]
    )
    if not ids:
        existing = s.scalar(
            select(Message.id).where(Message.workspace_id == ws, Message.dedup_key == key)
        )
        assert existing is not None
        return Dropped(existing, False)
    s.execute(update(Message).where(Message.id.in_(ids)).values(origin="bcc"))
    notify.messages_received(s, ws, account_id, DROP_FOLDER, ids)
    notify.links_created(s, ws, ids)
    return Dropped(ids[0], True)


def forwarded_envelope(raw: bytes, parsed: ParsedMessage) -> Envelope | None:
    """The envelope of the first forwarded message (a message/rfc822 part), if any.

    The part is taken with the same MIME walk that lists attachments, so a forward the
    sender's client base64-encoded is decoded like any attachment.
    """
    for index, att in enumerate(parsed.attachments):
        if att.content_type not in ("message/rfc822", "message/global"):
            continue
        found = extract_part(raw, index=index)
        if found is None:
            return None
        env = parse_envelope(found[2])
        return env if env.participants() else None
    return None
