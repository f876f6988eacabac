"""Mail written in the CRM: who sends it, and how it is queued.

A send is recorded in one transaction: the message (composed once, its exact bytes kept,
so a retry sends the same Message-ID and body), its timeline links, and a "send" outbox
action. The sync worker hands it to SMTP and files the Sent copy (see
:mod:`crmail.sync.sending`).

Sender identity (HighLevel's rules, seed 001):
- individual email goes out through the user's own connected mailbox;
- bulk email too, when its From is that mailbox's address (or left blank); any other
  From goes through the workspace's default sending provider;
- workflow / automation email always goes through the default provider.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crmail.domain.account import AccountState
from crmail.domain.addresses import normalize_email, sendable_address
from crmail.domain.attachments import AttachmentPolicy, check_attachments, check_message_size
from crmail.domain.attachments import account_policy as attachment_policy_of
from crmail.domain.scope import links_for
from crmail.errors import InvalidInput, NotFound, RateLimited
from crmail.mime import Address, parse_message
from crmail.mime.compose import Draft, OutgoingAttachment, compose, reply_references, reply_subject
from crmail.mime.keys import envelope_key, envelope_roles
from crmail.storage import autocreate, crm, mail, notify, outbox
from crmail.storage.actions import Queued
from crmail.storage.models import (
    MailAccount,
    Message,
    MessageRaw,
    MessageRef,
    OutboxAction,
    Participant,
    Placement,
    User,
    utcnow,
)

KINDS = ("individual", "bulk", "workflow")
#: what the default provider accepts when nothing else is known (a common relay limit)
DEFAULT_PROVIDER_POLICY = AttachmentPolicy(25 * 1024 * 1024, None, "the default sending provider")


@dataclass(frozen=True, slots=True)
class NewAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutgoingDraft:
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[NewAttachment, ...] = ()
    #: a From chosen by the user (bulk email); None: the user's own address
    from_address: str | None = None
    #: an iMIP invitation or cancellation (iTIP method, VCALENDAR bytes)
    calendar: tuple[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class SenderChoice:
    via: str  # "account" | "default_provider"
    account_id: int | None
    from_address: str
    from_name: str
    policy: AttachmentPolicy


@dataclass(frozen=True, slots=True)
class SendQueued(Queued):
    message_id: int = 0


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What one user may send (CRMAIL_MAX_RECIPIENTS, CRMAIL_SENDS_PER_HOUR)."""

    max_recipients: int = 100
    sends_per_hour: int = 200  # 0: no limit


#: the window of the sending rate limit
RATE_WINDOW = timedelta(hours=1)


def _sending_account(
    s: Session, user: crm.UserInfo, prefer: int | None = None
) -> MailAccount | None:
    rows = list(
        s.scalars(
            select(MailAccount)
            .where(
                MailAccount.user_id == user.id,
                MailAccount.state != AccountState.DISCONNECTED.value,
            )
            .order_by(MailAccount.id.desc())
        )
    )
    for a in rows:
        if a.id == prefer:
            return a
    return rows[0] if rows else None


def account_policy(a: MailAccount) -> AttachmentPolicy:
    return attachment_policy_of(a.settings, a.provider)


def sender_for(
    s: Session,
    user: crm.UserInfo,
    kind: str,
    from_address: str | None,
    *,
    default_from: str | None,
    prefer_account: int | None = None,
) -> SenderChoice:
    """Which mailbox (or the default provider) sends this email, and from which address."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    wanted = normalize_email(from_address) if from_address else None
    if from_address and wanted is None:
        raise InvalidInput(f"{from_address!r} is not a valid From address")
    account = _sending_account(s, user, prefer_account) if kind != "workflow" else None
    if account is not None and (kind == "individual" or wanted in (None, account.email)):
        return SenderChoice(
            "account", account.id, account.email, user.name, account_policy(account)
        )
    if kind == "individual":
        raise InvalidInput(
            "connect your mailbox to send email from the CRM",
            hint="Settings → Email → Connect a mailbox",
        )
    sender = wanted or (normalize_email(default_from) if default_from else None)
    if default_from is None or sender is None:
        raise InvalidInput(
            "no default sending provider is configured for bulk and workflow email",
            hint="set CRMAIL_DEFAULT_SMTP_URL and CRMAIL_DEFAULT_FROM",
        )
    return SenderChoice("default_provider", None, sender, "", DEFAULT_PROVIDER_POLICY)


def _addresses(values: Sequence[str], field: str) -> tuple[Address, ...]:
    return tuple(Address("", sendable_address(v, field)) for v in values)


def _check_recipient_count(addresses: Sequence[Address], limits: SendLimits) -> None:
    count = len({a.email for a in addresses})
    if count > limits.max_recipients:
        raise InvalidInput(
            f"This message has {count} recipients; at most {limits.max_recipients} "
            "are allowed per message.",
            hint="Send it in smaller groups, or as bulk email to a list.",
        )


def _check_send_rate(s: Session, user: crm.UserInfo, limits: SendLimits) -> None:
    """At most ``limits.sends_per_hour`` sends per user in any rolling hour."""
    if limits.sends_per_hour <= 0:
        return
    # Serialise this user's sends so two at once cannot both take the last slot.
    s.execute(select(User.id).where(User.id == user.id).with_for_update())
    now = utcnow()
    count, oldest = s.execute(
        select(func.count(), func.min(OutboxAction.created_at)).where(
            OutboxAction.user_id == user.id,
            OutboxAction.kind == "send",
            OutboxAction.created_at > now - RATE_WINDOW,
        )
    ).one()
    if count < limits.sends_per_hour:
        return
    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    wait = max(1, math.ceil((oldest + RATE_WINDOW - now).total_seconds()))
    raise RateLimited(
        f"You have sent {count} messages in the last hour; the limit is "
        f"{limits.sends_per_hour} per hour, so mail providers do not suspend the mailbox.",
        retry_after=wait,
        hint=f"Try again in {math.ceil(wait / 60)} minutes.",
    )


def queue_send(
    s: Session,
    user: crm.UserInfo,
    draft: OutgoingDraft,
    *,
    kind: str = "individual",
    reply_to: int | None = None,
    default_from: str | None = None,
    limits: SendLimits = SendLimits(),
) -> SendQueued:
    """Compose, store and queue an email; limits are checked before anything is stored."""
    _check_send_rate(s, user, limits)
    parent: Message | None = None
    parent_account: int | None = None
    if reply_to is not None:
        if not crm.can_see_message(s, user, reply_to):
            raise NotFound(f"message {reply_to} not found")
        parent = s.get_one(Message, reply_to)
        parent_account = s.scalar(
            select(MailAccount.id)
            .join(Placement, Placement.account_id == MailAccount.id)
            .where(MailAccount.user_id == user.id, Placement.message_id == reply_to)
            .limit(1)
        )
    sender = sender_for(
        s, user, kind, draft.from_address, default_from=default_from, prefer_account=parent_account
    )
    check_attachments(sender.policy, [(a.filename, len(a.data)) for a in draft.attachments])
    # The content is a lower bound of the message as sent: a 30 MB body is refused
    # before it is composed, not after.
    check_message_size(sender.policy, _content_size(draft))
    to, cc, bcc = (
        _addresses(draft.to, "To"),
        _addresses(draft.cc, "Cc"),
        _addresses(draft.bcc, "Bcc"),
    )
    if parent is not None and not (to or cc or bcc):
        to = _reply_recipients(s, parent, user.workspace_id)
    if not (to or cc or bcc):
        raise InvalidInput("add at least one recipient")
    _check_recipient_count((*to, *cc, *bcc), limits)

    subject = draft.subject
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    if parent is not None:
        if parent.message_id:
            refs = list(s.scalars(select(MessageRef.ref).where(MessageRef.message_id == parent.id)))
            in_reply_to = parent.message_id
            references = reply_references(parent.message_id, refs)
        subject = subject or reply_subject(parent.subject)
    composed = compose(
        Draft(
            from_=Address(sender.from_name, sender.from_address),
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            text=draft.text,
            html=draft.html,
            attachments=tuple(
                OutgoingAttachment(a.filename, a.content_type, a.data) for a in draft.attachments
            ),
            in_reply_to=in_reply_to,
            references=references,
            date=datetime.now(UTC),
            calendar=draft.calendar,
        )
    )
    check_message_size(sender.policy, len(composed.raw))
    parsed = parse_message(composed.raw)
    roles = envelope_roles(parsed.envelope)
    roles["bcc"] = {a.email for a in bcc}  # not in the headers, but the user wrote to them
    book = mail.address_book(s, user.workspace_id)
    if kind == "individual":
        # Auto-create (seed 004): new recipients become contacts first, so this message
        # links to them. Bulk and workflow sends go to lists: they never create.
        book = autocreate.for_message(s, sender.account_id, parsed.envelope, book, extra_bcc=bcc)
    key = envelope_key(parsed.envelope, composed.raw)
    stored = mail.store_messages(
        s, user.workspace_id, [mail.NewMessage(key, parsed, composed.raw, links_for(roles, book))]
    )
    if not stored:  # pragma: no cover - a fresh Message-ID cannot be stored already
        raise InvalidInput("this message was already sent")
    mid = stored[0]
    s.execute(
        update(Message)
        .where(Message.id == mid)
        .values(
            origin="crm",
            crm_account_id=sender.account_id,
            crm_from=sender.from_address,
            send_state="queued",
            sent_by_user_id=user.id,
        )
    )
    outbox.enqueue(
        s,
        workspace_id=user.workspace_id,
        account_id=sender.account_id,
        user_id=user.id,
        message_id=mid,
        kind="send",
        payload={
            "stage": "queued",
            "via": sender.via,
            "mail_from": sender.from_address,
            "recipients": list(composed.recipients),
            "reply_to": reply_to,
            "kind": kind,
        },
    )
    accounts = frozenset({sender.account_id}) if sender.account_id else frozenset()
    return SendQueued(accounts, 0, sender.account_id is None, mid)


def _content_size(draft: OutgoingDraft) -> int:
    text = len(draft.text or "") + len(draft.html or "")
    return text + sum(len(a.data) for a in draft.attachments)


def _reply_recipients(s: Session, parent: Message, workspace_id: int) -> tuple[Address, ...]:
    """Who a plain "Reply" goes to: the parent's Reply-To, else its From — or, when we
    wrote the parent, its To."""
    rows = s.execute(
        select(Participant.role, Participant.email, Participant.name)
        .where(Participant.message_id == parent.id)
        .order_by(Participant.position)
    ).all()
    by_role: dict[str, list[Address]] = {}
    for role, email, name in rows:
        by_role.setdefault(role, []).append(Address(name, email))
    own = mail.address_book(s, workspace_id).own
    sender = by_role.get("from", [])
    if sender and sender[0].email in own:
        return tuple(by_role.get("to", []))
    return tuple(by_role.get("reply_to") or sender)


def retry_send(s: Session, user: crm.UserInfo, message_id: int) -> Queued:
    """Send again a message whose send failed or was interrupted (the user decides)."""
    m = s.get(Message, message_id)
    if m is None or m.workspace_id != user.workspace_id or m.origin != "crm":
        raise NotFound(f"message {message_id} not found")
    action = s.scalar(
        select(OutboxAction)
        .where(OutboxAction.message_id == message_id, OutboxAction.kind == "send")
        .order_by(OutboxAction.id.desc())
        .limit(1)
    )
    if action is None or action.user_id != user.id:
        raise NotFound(f"message {message_id} not found")
    if m.send_state not in ("failed", "unknown"):
        raise InvalidInput(f"this message is {m.send_state}; only failed sends can be retried")
    action.state = outbox.PENDING
    action.attempts = 0
    action.next_attempt_at = utcnow()
    action.payload = {**action.payload, "stage": "queued"}
    m.send_state = "queued"
    m.send_error = None
    if action.account_id is None:
        return Queued(frozenset(), 1, default_provider=True)
    return Queued(frozenset({action.account_id}), 1)


def raw_of(s: Session, message_id: int) -> bytes:
    return s.get_one(MessageRaw, message_id).raw


def set_send_state(s: Session, message_id: int, state: str, error: str | None = None) -> None:
    values: dict[str, object] = {"send_state": state, "send_error": error}
    s.execute(update(Message).where(Message.id == message_id).values(**values))


def send_progress(
    s: Session,
    action_id: int,
    message_id: int,
    payload: dict[str, object],
    state: str,
    error: str | None = None,
) -> None:
    outbox.save_progress(s, action_id, payload)
    set_send_state(s, message_id, state, error)
    if state in ("failed", "unknown"):
        notify.send_result(s, message_id)


def record_sent(
    s: Session,
    action: outbox.Action,
    message_id: int,
    payload: dict[str, object],
    answering: tuple[int, int] | None,
) -> None:
    """SMTP accepted the message: durable at once, so nothing can send it twice."""
    outbox.save_progress(s, action.id, payload)
    refused = payload.get("refused")
    note = None
    if isinstance(refused, dict) and refused:
        note = "not delivered to: " + ", ".join(f"{k} ({v})" for k, v in refused.items())
    set_send_state(s, message_id, "sent", note)
    notify.send_result(s, message_id)
    parent = action.payload.get("reply_to")
    if parent and answering is not None:
        mark_answered(s, answering[0], answering[1], int(str(parent)))


def mark_answered(s: Session, account_id: int, user_id: int, parent_id: int) -> None:
    """The replied-to message gets \\Answered in the sender's own mailbox."""
    ws = s.get_one(MailAccount, account_id).workspace_id
    has_copy = s.scalar(
        select(Placement.id).where(
            Placement.account_id == account_id, Placement.message_id == parent_id
        )
    )
    if has_copy:
        outbox.enqueue_sync(
            s,
            workspace_id=ws,
            account_id=account_id,
            user_id=user_id,
            message_id=parent_id,
            change=outbox.SyncChange(add=frozenset({"\\Answered"})),
        )


def sent_filed(s: Session, account_id: int, action_id: int, server_saves_sent: bool | None) -> None:
    """The Sent copy is in place; remember whether the server files its own copies."""
    outbox.complete(s, action_id)
    if server_saves_sent is not None:
        a = s.get_one(MailAccount, account_id)
        a.settings = {**a.settings, "server_saves_sent": server_saves_sent}
