"""A batch of new mail is threaded with a fixed number of statements (both backends).

Replies found only by their subject, and existing threads whose last message moves, used
to cost a statement each: a network round trip per reply on PostgreSQL. The batch's
lookups are now one statement and its thread updates one ``executemany``; the threads
chosen are the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select

from crmail.mime import parse_message
from crmail.mime.keys import envelope_key
from crmail.services import Services
from crmail.storage import mail
from crmail.storage.models import Message, Thread
from tests.factories import new_world
from tests.sql_statements import statements

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def new(key: str, subject: str, when: datetime, *refs: str) -> mail.NewMessage:
    m = EmailMessage()
    m["From"] = "Ann <ann@client.test>"
    m["To"] = "me@acme.test"
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<{key}@client.test>"
    if refs:
        m["In-Reply-To"] = f"<{refs[-1]}@client.test>"
        m["References"] = " ".join(f"<{r}@client.test>" for r in refs)
    m.set_content("Hello")
    raw = m.as_bytes()
    parsed = parse_message(raw)
    # The real key: threading finds a message by Message-ID through it.
    return mail.NewMessage(envelope_key(parsed.envelope), parsed, raw, ())


def store(services: Services, ws: int, news: list[mail.NewMessage]) -> None:
    services.db.run(lambda s: mail.store_messages(s, ws, news))


def threads(services: Services, ws: int) -> dict[str, int]:
    """Each message's thread, by the name ``new`` was given (its Message-ID's local part)."""
    rows = services.db.run(
        lambda s: s.execute(
            select(Message.message_id, Message.thread_id).where(Message.workspace_id == ws)
        ).all()
    )
    return {str(mid).split("@")[0]: tid for mid, tid in rows}


def last_message_at(services: Services, thread_id: int) -> datetime | None:
    return services.db.run(lambda s: s.get_one(Thread, thread_id).last_message_at)


def test_replies_join_their_threads_with_one_lookup_and_one_update(services: Services) -> None:
    ws = new_world(services).workspace_id
    store(services, ws, [new("p0", "Proposal", T0), new("o0", "Offer", T0)])
    batch = [
        *(new(f"p{i}", "Re: Proposal", T0 + timedelta(days=i)) for i in range(1, 6)),
        new("far", "RE: proposal", T0 + timedelta(days=40)),  # outside the window
        new("plain", "Proposal", T0 + timedelta(days=1)),  # not a reply: its own thread
        new("o1", "Re: Offer", T0 + timedelta(days=2), "o0"),  # by reference
    ]
    with statements(services) as seen:
        store(services, ws, batch)

    by_key = threads(services, ws)
    proposal, offer = by_key["p0"], by_key["o0"]
    assert {by_key[f"p{i}"] for i in range(1, 6)} == {proposal}
    assert by_key["o1"] == offer
    assert len({by_key["far"], by_key["plain"], proposal, offer}) == 4
    assert last_message_at(services, proposal) == T0 + timedelta(days=5)
    assert last_message_at(services, offer) == T0 + timedelta(days=2)
    # However many replies: one lookup by subject, one statement moving last-message times.
    assert len([q for q in seen if "subject_key" in q and q.lstrip().startswith("SELECT")]) == 1
    assert len([q for q in seen if q.startswith("UPDATE threads")]) == 1

    # An older reply joins too, and never moves the thread's last message back.
    store(services, ws, [new("old", "Re: Proposal", T0 - timedelta(days=3))])
    assert threads(services, ws)["old"] == proposal
    assert last_message_at(services, proposal) == T0 + timedelta(days=5)


def test_a_reply_by_subject_follows_a_thread_merged_earlier_in_the_batch(
    services: Services,
) -> None:
    """A message referencing two stored threads merges them; a later reply of the same
    batch whose subject matched the thread merged away joins the thread it went into."""
    ws = new_world(services).workspace_id
    store(services, ws, [new("a0", "Alpha", T0)])
    store(services, ws, [new("b0", "Beta", T0)])
    alpha = threads(services, ws)["a0"]
    store(
        services,
        ws,
        [
            new("both", "Re: Alpha", T0 + timedelta(days=1), "a0", "b0"),
            new("beta-reply", "Re: Beta", T0 + timedelta(days=2)),
        ],
    )
    by_key = threads(services, ws)
    assert by_key["b0"] == by_key["both"] == by_key["beta-reply"] == alpha
    remaining = services.db.run(
        lambda s: set(s.scalars(select(Thread.id).where(Thread.workspace_id == ws)))
    )
    assert remaining == {alpha}


def test_new_threads_are_keyed_in_the_order_they_are_stored(services: Services) -> None:
    # Each batch finds its new threads again by root key. A key made from the message
    # (its dedup key) sorted anywhere in the workspace's index, a random leaf page per
    # new thread in a big workspace; a time-ordered one lands in the index's last leaf.
    ws = new_world(services).workspace_id
    store(services, ws, [new(f"z{i}", f"Topic {i}", T0) for i in range(3)])
    store(services, ws, [new(f"a{i}", f"Subject {i}", T0) for i in range(3)])
    rows = services.db.run(
        lambda s: s.execute(
            select(Thread.id, Thread.root_key).where(Thread.workspace_id == ws).order_by(Thread.id)
        ).all()
    )
    keys = [key for _, key in rows]
    assert len(rows) == 6 and None not in keys
    assert keys == sorted(keys)  # later threads, greater keys, whatever their messages
    by_key = threads(services, ws)
    assert [by_key[k] for k in ("z0", "z1", "z2", "a0", "a1", "a2")] == [tid for tid, _ in rows]
