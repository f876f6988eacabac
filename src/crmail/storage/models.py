"""The database schema, as SQLAlchemy 2 typed ORM classes.

One message is stored once per workspace (``messages``); where it lives on a mail server
is a ``placement`` (one per account, folder and UID), and what a user does with it is an
``inbox_item``. ``timeline_entries`` say which contact, lead or deal a message belongs
to, and why. Nothing outside ``crmail.storage`` imports this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always gives back aware ones (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


Id = BigInteger().with_variant(Integer(), "sqlite")


def pk() -> Mapped[int]:
    return mapped_column(Id, primary_key=True, autoincrement=True)


def fk(
    target: str, *, nullable: bool = False, ondelete: str = "CASCADE", index: bool = True
) -> Mapped[Any]:
    return mapped_column(Id, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


# --- the CRM ------------------------------------------------------------------


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(String(200))
    #: auto-create blocklist, default sending provider, teammate-inbox policy...
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="member")
    #: scrypt hash for signing in to the web app; None: API token only
    password_hash: Mapped[str | None] = mapped_column(String(200))
    #: set by an admin: no sign-in, no session, no API token works while it is set
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)


class ApiToken(Base):
    """A named API token of a user: revocable, optionally expiring; only its sha256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = pk()
    user_id: Mapped[int] = fk("users.id")
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the token's first characters, so a user can tell their tokens apart ("" when unknown)
    prefix: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: updated at most once a minute, not on every request
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Lead(Base):
    """A company or organisation; contacts belong to at most one lead."""

    __tablename__ = "leads"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_leads_ws_id", "workspace_id", "id"),)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    lead_id: Mapped[int | None] = fk("leads.id", nullable=True, ondelete="SET NULL")
    name: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Lists are read in id order, paged by the last id: these serve both.
    __table_args__ = (
        Index("ix_contacts_ws_id", "workspace_id", "id"),
        Index("ix_contacts_lead_order", "lead_id", "id"),
    )


class ContactEmail(Base):
    __tablename__ = "contact_emails"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    contact_id: Mapped[int] = fk("contacts.id")
    email: Mapped[str] = mapped_column(String(320))
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)


class Deal(Base):
    __tablename__ = "deals"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    lead_id: Mapped[int | None] = fk("leads.id", nullable=True, ondelete="SET NULL")
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), default="open")
    value_cents: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        Index("ix_deals_ws_id", "workspace_id", "id"),
        Index("ix_deals_ws_status_id", "workspace_id", "status", "id"),
    )


class DealContact(Base):
    __tablename__ = "deal_contacts"
    deal_id: Mapped[int] = mapped_column(
        Id, ForeignKey("deals.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


# --- mail accounts --------------------------------------------------------------


class MailAccount(Base):
    __tablename__ = "mail_accounts"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    user_id: Mapped[int] = fk("users.id")
    email: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(20), default="imap")
    #: host, ports, security, username, history window, scope... (no secrets)
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    #: Fernet token of the JSON secrets (password / OAuth tokens)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20), default="new")
    #: the local part of this account's BCC drop address (1-way mode)
    drop_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_code: Mapped[str | None] = mapped_column(String(40))
    last_sync_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Folder(Base):
    """Sync state of one server folder of one account."""

    __tablename__ = "folders"
    id: Mapped[int] = pk()
    account_id: Mapped[int] = fk("mail_accounts.id")
    name: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    #: every UID below this was examined by the incremental sync
    uidnext: Mapped[int | None] = mapped_column(BigInteger)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    #: the initial import walks down from uidnext; UIDs >= import_floor are done
    import_floor: Mapped[int | None] = mapped_column(BigInteger)
    import_total: Mapped[int] = mapped_column(Integer, default=0)
    import_done: Mapped[int] = mapped_column(Integer, default=0)
    import_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    synced: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    last_sync_at: Mapped[datetime | None]
    #: a provider's own sync cursor where it is a link, not a number (Microsoft Graph:
    #: the folder's delta link, or the next page of its unfinished first round)
    sync_link: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("account_id", "name"),)


# --- messages ---------------------------------------------------------------------


class Thread(Base):
    __tablename__ = "threads"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_key: Mapped[str] = mapped_column(String(200), default="")
    last_message_at: Mapped[datetime | None]
    #: lets a batch of new threads be inserted in one statement and found again (no
    #: per-row RETURNING). Time-ordered (storage.mail._root_key); older threads carry
    #: their first message's dedup key. Nothing else reads it.
    root_key: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        UniqueConstraint("workspace_id", "root_key"),
        # A reply found by subject (storage.mail): the candidates, not the workspace.
        Index("ix_threads_ws_subject", "workspace_id", "subject_key", "last_message_at"),
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    #: no index of its own: ix_messages_thread_date leads with it and serves every lookup
    #: by thread (the foreign key's included); a second one cost an import a random leaf
    #: page per reply in a big workspace
    thread_id: Mapped[int] = fk("threads.id", ondelete="RESTRICT", index=False)
    dedup_key: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(998))
    subject: Mapped[str] = mapped_column(Text, default="")
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(300), default="")
    sent_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    snippet: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    is_bulk: Mapped[bool] = mapped_column(Boolean, default=False)
    parse_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    defects: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: how it entered the CRM: "sync" (a mailbox), "crm" (sent from the CRM), "bcc" (drop address)
    origin: Mapped[str] = mapped_column(String(10), default="sync")
    #: for mail sent from the CRM: the account it went through (None: default provider)
    crm_account_id: Mapped[int | None] = fk("mail_accounts.id", nullable=True, ondelete="SET NULL")
    #: the address it was sent from by the CRM: threads follow the address, not the account
    crm_from: Mapped[str | None] = mapped_column(String(320))
    #: queued | sending | sent | failed | unknown (crash while handing to SMTP)
    send_state: Mapped[str | None] = mapped_column(String(10))
    send_error: Mapped[str | None] = mapped_column(Text)
    #: for mail sent from the CRM: who sent it (they may always read it)
    sent_by_user_id: Mapped[int | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        # Also finds messages by Message-ID: a key starts with its Message-ID's digest
        # (crmail.domain.identity), so no index keyed by Message-ID is written too.
        UniqueConstraint("workspace_id", "dedup_key"),
        # A thread's messages in date order (the date as timelines and summaries show it).
        Index(
            "ix_messages_thread_date",
            "thread_id",
            text("coalesce(sent_at, received_at)"),
            "id",
        ),
    )


class MessageRaw(Base):
    """The bytes as the server gave them: the truth we can always re-parse."""

    __tablename__ = "message_raw"
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class MessageRef(Base):
    """Message-IDs a message points at (In-Reply-To and References), for threading."""

    __tablename__ = "message_refs"
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    ref: Mapped[str] = mapped_column(String(998), primary_key=True)
    workspace_id: Mapped[int] = fk("workspaces.id")
    __table_args__ = (Index("ix_message_refs_ws_ref", "workspace_id", "ref"),)


class Participant(Base):
    __tablename__ = "participants"
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: not indexed: participants are read by message, never looked up by address (an
    #: index keyed by correspondent cost an import a random leaf page per message)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(300), default="")


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = pk()
    message_id: Mapped[int] = fk("messages.id")
    filename: Mapped[str | None] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[str | None] = mapped_column(String(500))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    placeholder_reason: Mapped[str | None] = mapped_column(Text)


class Placement(Base):
    """One copy of a message on a server: account, folder, UID and flags."""

    __tablename__ = "placements"
    id: Mapped[int] = pk()
    message_id: Mapped[int] = fk("messages.id")
    account_id: Mapped[int] = fk("mail_accounts.id")
    folder_id: Mapped[int] = fk("folders.id")
    uid: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    #: the provider's own id of this copy where it has one (Gmail: the message id, and
    #: ``uid`` a stable number made from it, see crmail.sync.gmail.labels); None on IMAP
    remote_id: Mapped[str | None] = mapped_column(String(255))
    #: the provider's conversation id (Gmail's threadId, Graph's conversationId): replies
    #: are sent into it
    remote_thread: Mapped[str | None] = mapped_column(String(255))
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        UniqueConstraint("folder_id", "remote_id"),
    )


class TimelineEntry(Base):
    __tablename__ = "timeline_entries"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    message_id: Mapped[int] = fk("messages.id")
    subject_type: Mapped[str] = mapped_column(String(10))
    subject_id: Mapped[int] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(String(200))
    #: the message's date (coalesce(sent_at, received_at)), copied so a timeline is read
    #: in index order without joining messages; filled on insert (see below)
    message_date: Mapped[datetime]
    #: "auto" (at arrival) or "manual" (a user linked it)
    source: Mapped[str] = mapped_column(String(10), default="auto")
    created_by: Mapped[int | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("message_id", "subject_type", "subject_id"),
        Index(
            "ix_timeline_subject_date",
            "workspace_id",
            "subject_type",
            "subject_id",
            "message_date",
            "message_id",
        ),
    )


@event.listens_for(TimelineEntry, "before_insert")
def _fill_message_date(_mapper: object, conn: Connection, entry: TimelineEntry) -> None:
    # ORM inserts (manual links) may leave the date out; the bulk import path sets it.
    if entry.message_date is None:
        entry.message_date = conn.scalar(
            select(func.coalesce(Message.sent_at, Message.received_at, type_=UTCDateTime())).where(
                Message.id == entry.message_id
            )
        )


class InboxItem(Base):
    """A message in a user's CRM Inbox: what that user still has to handle."""

    __tablename__ = "inbox_items"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    user_id: Mapped[int] = fk("users.id")
    message_id: Mapped[int] = fk("messages.id")
    thread_id: Mapped[int] = fk("threads.id")
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    #: open: in the Inbox; archived: left INBOX on the server; done: handled in the CRM;
    #: snoozed: out of the Inbox until snooze_until
    state: Mapped[str] = mapped_column(String(10), default="open")
    snooze_until: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: someone besides the owner may see the message: it is on a timeline, or in another
    #: member's own mail (a copy, an Inbox item, sent by them). True whenever that may
    #: hold (kept by ``storage/item_sharing.py``), so a teammate's Inbox reads only these
    #: rows in index order and applies the exact rule to them; false means private.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (
        UniqueConstraint("user_id", "message_id"),
        Index("ix_inbox_user_state_received", "user_id", "state", "received_at", "id"),
        # A teammate's Inbox: the owner's shared items in order, private ones never read
        # (shared before state: one's own Inbox must not look served by it).
        Index("ix_inbox_user_shared_state", "user_id", "shared", "state", "received_at", "id"),
        # Due snoozed items, found by their time (few: the waker reopens them).
        Index("ix_inbox_user_snoozed_due", "user_id", "state", "snooze_until"),
    )


# --- two-way: actions from the CRM to the mailbox ---------------------------------------


class OutboxAction(Base):
    """A change the CRM owes a mail server, written in the same transaction as the CRM change.

    Drained per account in id order; several pending actions on one message collapse into
    one desired state (flags to add/remove, a destination folder, a send).
    """

    __tablename__ = "outbox"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    account_id: Mapped[int | None] = fk("mail_accounts.id", nullable=True)
    user_id: Mapped[int | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    message_id: Mapped[int | None] = fk("messages.id", nullable=True)
    #: "sync" (flags / move / delete on a message) or "send"
    kind: Mapped[str] = mapped_column(String(10))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    #: pending | running | done | failed
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        Index("ix_outbox_drain", "account_id", "state", "id"),
        # the per-user sending rate limit counts recent sends
        Index("ix_outbox_user_kind_created", "user_id", "kind", "created_at"),
    )


# --- web app and integrations -------------------------------------------------------------


class WebSession(Base):
    __tablename__ = "web_sessions"
    id: Mapped[int] = pk()
    user_id: Mapped[int] = fk("users.id")
    #: sha256 of the cookie value: a stolen database does not give live sessions
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class OAuthState(Base):
    """An OAuth sign-in under way (Connect with Google / Microsoft): single use, short-lived."""

    __tablename__ = "oauth_states"
    id: Mapped[int] = pk()
    #: sha256 of the ``state`` sent to the provider
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = fk("users.id")
    #: sha256 of the web session cookie that started it; None: started through the API
    #: (the callback then needs a web session of the same user)
    session_hash: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(20))
    #: the PKCE verifier: worthless without the code, which only our redirect URI gets
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = pk()
    workspace_id: Mapped[int] = fk("workspaces.id")
    url: Mapped[str] = mapped_column(String(2000))
    #: Fernet-sealed signing secret
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    #: event types delivered; empty: all
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    id: Mapped[int] = pk()
    #: the public id receivers deduplicate on
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    workspace_id: Mapped[int] = fk("workspaces.id")
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = pk()
    endpoint_id: Mapped[int] = fk("webhook_endpoints.id")
    event_id: Mapped[int] = fk("webhook_events.id")
    #: pending | delivered | failed
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )


# --- several processes -----------------------------------------------------------------


class AccountLease(Base):
    """Which process syncs an account until ``expires_at``; ``epoch`` grows on every
    takeover and fences the writes of an owner that lost it (account 0: the default
    sending provider's queue)."""

    __tablename__ = "account_leases"
    account_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    #: host:pid:random of the holder; None: released
    owner: Mapped[str | None] = mapped_column(String(120), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime]


class GraphSubscription(Base):
    """A Microsoft Graph account's change-notification subscription (push): one per
    account. The clientState every notification must carry is sealed like a password."""

    __tablename__ = "graph_subscriptions"
    account_id: Mapped[int] = mapped_column(
        Id, ForeignKey("mail_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    #: Graph's id for it: what each notification names
    subscription_id: Mapped[str] = mapped_column(String(100), unique=True)
    resource: Mapped[str] = mapped_column(String(255))
    notification_url: Mapped[str] = mapped_column(Text)
    #: Fernet token of {"client_state": ...}
    client_state: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    #: Graph asked for reauthorization (lifecycle notification): renew now
    renew_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class SyncProcess(Base):
    """A live sync process (heartbeat): the count gives each its fair share of accounts."""

    __tablename__ = "sync_processes"
    owner: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


# The calendar tables live in their own module; imported here so Base.metadata has them.
from crmail.storage import calendar_models as _calendar_models  # noqa: E402, F401
