"""The Gmail client reads a mailbox as Gmail serves it: pages, newest first, metadata
batches, exact raw bytes, and history as the sync cursor."""

from __future__ import annotations

import datetime as dt

import pytest

from crmail.errors import HistoryExpired, MessageNotInMailbox
from crmail.providers.gmail import Message
from tests.providers.gmail.conftest import Gmail
from tests.providers.gmail.mail import raw_message

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def _deliver_days(gmail: Gmail, days: int) -> list[str]:
    """One message a day from T0, oldest first; returns their ids."""
    return [
        gmail.box.deliver(raw_message(f"Day {n}"), internal_date=T0 + dt.timedelta(days=n)).id
        for n in range(days)
    ]


async def test_profile_names_the_mailbox_and_its_history_id(gmail: Gmail) -> None:
    _deliver_days(gmail, 2)
    profile = await gmail.client.get_profile()
    assert profile.email_address == gmail.box.address
    assert profile.messages_total == 2
    assert profile.history_id == gmail.box.history_id


async def test_listing_pages_through_every_message_newest_first(gmail: Gmail) -> None:
    ids = _deliver_days(gmail, 7)
    before = gmail.fake.count("GET", "/messages")
    listed = [ref.id async for ref in gmail.client.iter_messages(page_size=3)]
    assert listed == list(reversed(ids))
    assert gmail.fake.count("GET", "/messages") - before == 3  # 3 + 3 + 1


async def test_listing_hides_spam_and_trash_and_filters_by_date_and_label(gmail: Gmail) -> None:
    ids = _deliver_days(gmail, 5)
    await gmail.client.trash(ids[0])
    gmail.box.modify(ids[1], add=["SPAM"], remove=["INBOX"])
    page = await gmail.client.list_messages()
    assert [m.id for m in page.messages] == [ids[4], ids[3], ids[2]]
    with_trash = await gmail.client.list_messages(include_spam_trash=True)
    assert len(with_trash.messages) == 5

    after = int((T0 + dt.timedelta(days=3)).timestamp())
    recent = await gmail.client.list_messages(q=f"after:{after}")
    assert [m.id for m in recent.messages] == [ids[4], ids[3]]
    older = await gmail.client.list_messages(q="before:2026/11/04")
    assert [m.id for m in older.messages] == [ids[2]]  # ids 0, 1 are in trash / spam

    gmail.box.modify(ids[3], remove=["INBOX"])
    inbox = await gmail.client.list_messages(label_ids=["INBOX", "UNREAD"])
    assert [m.id for m in inbox.messages] == [ids[4], ids[2]]


async def test_raw_is_the_exact_bytes_delivered(gmail: Gmail) -> None:
    raw = raw_message("Bytes", body="caf\u00e9 \u2014 line\r\n.\r\n  trailing  ")
    mid = gmail.box.deliver(raw).id
    message = await gmail.client.get_message(mid, format="raw")
    assert message.raw == raw
    assert message.label_ids == ("INBOX", "UNREAD")
    assert message.internal_date is not None


async def test_metadata_gives_the_headers_asked_for_without_the_body(gmail: Gmail) -> None:
    mid = gmail.box.deliver(raw_message("Quarterly numbers", body="secret body")).id
    message = await gmail.client.get_message(
        mid, format="metadata", metadata_headers=["Subject", "Message-ID"]
    )
    assert message.header("subject") == "Quarterly numbers"
    assert message.header("From") is None  # not asked for
    assert message.raw is None


async def test_metadata_batch_fetches_many_in_few_requests_and_a_gone_message_fails_alone(
    gmail: Gmail,
) -> None:
    ids = [gmail.box.deliver(raw_message(f"Batch {n}")).id for n in range(130)]
    gmail.box.delete(ids[5])
    before = gmail.fake.count("POST", "/batch/gmail/v1")
    results = await gmail.client.batch_get_metadata(ids, headers=["Subject"])
    assert gmail.fake.count("POST", "/batch/gmail/v1") - before == 2  # 100 + 30
    assert list(results) == ids
    assert isinstance(results[ids[5]], MessageNotInMailbox)
    assert ids[5] in results[ids[5]].message
    for n, mid in enumerate(ids):
        if n != 5:
            message = results[mid]
            assert isinstance(message, Message)
            assert message.header("Subject") == f"Batch {n}"


async def test_getting_a_deleted_message_is_a_per_message_error(gmail: Gmail) -> None:
    mid = gmail.box.deliver(raw_message()).id
    gmail.box.delete(mid)
    with pytest.raises(MessageNotInMailbox):
        await gmail.client.get_message(mid)


async def test_history_reports_every_change_after_the_cursor(gmail: Gmail) -> None:
    start = (await gmail.client.get_profile()).history_id
    unchanged = await gmail.client.list_history(start)
    assert unchanged.records == () and unchanged.history_id == start

    a = gmail.box.deliver(raw_message("A")).id
    b = gmail.box.deliver(raw_message("B")).id
    await gmail.client.modify_message(a, remove=["UNREAD"])
    await gmail.client.trash(b)
    gmail.box.delete(a)

    history = await gmail.client.list_history(start, page_size=2)
    ids = [r.id for r in history.records]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > start
    assert history.history_id == gmail.box.history_id == ids[-1]
    added = [m.id for r in history.records for m in r.messages_added]
    assert added == [a, b]
    removed = [(c.message.id, c.label_ids) for r in history.records for c in r.labels_removed]
    assert removed == [(a, ("UNREAD",))]
    trashed = [(c.message.id, c.label_ids) for r in history.records for c in r.labels_added]
    assert trashed == [(b, ("TRASH",))]
    assert [m.id for r in history.records for m in r.messages_deleted] == [a]

    later = await gmail.client.list_history(history.history_id)
    assert later.records == ()

    only_added = await gmail.client.list_history(start, history_types=["messageAdded"])
    assert [bool(r.messages_added) for r in only_added.records] == [True, True]


async def test_an_expired_history_id_is_history_expired_not_a_retry(gmail: Gmail) -> None:
    start = (await gmail.client.get_profile()).history_id
    gmail.box.deliver(raw_message())
    gmail.box.expire_history()
    before = gmail.fake.count("GET", "/history")
    with pytest.raises(HistoryExpired) as caught:
        await gmail.client.list_history(start)
    assert gmail.fake.count("GET", "/history") - before == 1
    assert "read again in full" in caught.value.message
    fresh = (await gmail.client.get_profile()).history_id
    assert (await gmail.client.list_history(fresh)).records == ()
