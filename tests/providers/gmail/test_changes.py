"""Two-way actions become Gmail label changes; sending lets Gmail file the Sent copy."""

from __future__ import annotations

import pytest

from crmail.errors import MessageNotInMailbox, MessageTooLarge, ProviderRejected
from tests.providers.gmail.conftest import Gmail
from tests.providers.gmail.mail import raw_message


async def test_archive_removes_inbox_and_read_removes_unread(gmail: Gmail) -> None:
    mid = gmail.box.deliver(raw_message()).id
    read = await gmail.client.modify_message(mid, remove=["UNREAD"])
    assert read.label_ids == ("INBOX",)
    archived = await gmail.client.modify_message(mid, remove=["INBOX"])
    assert archived.label_ids == ()
    assert gmail.box.messages[mid].labels == set()
    assert (await gmail.client.list_messages(label_ids=["INBOX"])).messages == ()
    # Archived mail is still in the mailbox ("All Mail").
    assert [m.id for m in (await gmail.client.list_messages()).messages] == [mid]


@pytest.mark.parametrize("label", ["SENT", "DRAFT"])
async def test_sent_and_draft_cannot_be_added_and_say_so(gmail: Gmail, label: str) -> None:
    mid = gmail.box.deliver(raw_message()).id
    with pytest.raises(ProviderRejected) as caught:
        await gmail.client.modify_message(mid, add=[label])
    assert f"Invalid label: {label}" in caught.value.message
    assert caught.value.message.startswith("Gmail refused the request.")
    assert not caught.value.retryable
    assert gmail.box.messages[mid].labels == {"INBOX", "UNREAD"}


async def test_user_labels_are_created_once_and_set_like_folders(gmail: Gmail) -> None:
    label = await gmail.client.create_label("Clients/Acme")
    assert label.type == "user" and label.name == "Clients/Acme"
    with pytest.raises(ProviderRejected, match="exists"):
        await gmail.client.create_label("clients/acme")
    labels = {lbl.id: lbl for lbl in await gmail.client.list_labels()}
    assert {"INBOX", "SENT", "TRASH", "SPAM", "UNREAD", label.id} <= set(labels)
    assert labels["INBOX"].type == "system"

    ids = [gmail.box.deliver(raw_message(f"L{n}")).id for n in range(3)]
    await gmail.client.batch_modify(ids, add=[label.id], remove=["UNREAD"])
    assert all(gmail.box.messages[i].labels == {"INBOX", label.id} for i in ids)
    with pytest.raises(ProviderRejected):
        await gmail.client.modify_message(ids[0], add=["Label_999"])


async def test_trash_and_untrash_use_the_trash_label(gmail: Gmail) -> None:
    mid = gmail.box.deliver(raw_message()).id
    trashed = await gmail.client.trash(mid)
    assert "TRASH" in trashed.label_ids
    assert (await gmail.client.list_messages()).messages == ()
    restored = await gmail.client.untrash(mid)
    assert "TRASH" not in restored.label_ids and "INBOX" in restored.label_ids


async def test_modifying_a_deleted_message_is_a_per_message_error(gmail: Gmail) -> None:
    mid = gmail.box.deliver(raw_message()).id
    gmail.box.delete(mid)
    with pytest.raises(MessageNotInMailbox):
        await gmail.client.modify_message(mid, remove=["INBOX"])


async def test_send_files_one_sent_copy_in_the_thread_asked_for(gmail: Gmail) -> None:
    incoming = gmail.box.deliver(raw_message("Proposal", message_id="<p1@example.test>"))
    reply = raw_message(
        "Re: Proposal",
        sender=gmail.box.address,
        to="alice@example.test",
        in_reply_to="<p1@example.test>",
    )
    sent = await gmail.client.send_message(reply, thread_id=incoming.thread_id)
    assert sent.thread_id == incoming.thread_id
    assert sent.label_ids == ("SENT",)
    copies = [m for m in gmail.box.messages.values() if "SENT" in m.labels]
    assert [c.id for c in copies] == [sent.id]
    assert copies[0].raw == reply
    listed = await gmail.client.list_messages(label_ids=["SENT"])
    assert [m.id for m in listed.messages] == [sent.id]


async def test_a_reply_without_references_starts_its_own_thread(gmail: Gmail) -> None:
    incoming = gmail.box.deliver(raw_message("Proposal", message_id="<p2@example.test>"))
    unrelated = raw_message("Re: Proposal", sender=gmail.box.address, to="alice@example.test")
    sent = await gmail.client.send_message(unrelated, thread_id=incoming.thread_id)
    assert sent.thread_id != incoming.thread_id


async def test_a_message_over_25_mb_is_refused_before_sending(gmail: Gmail) -> None:
    huge = raw_message("Big", body="x" * (36 * 1024 * 1024))
    before = len(gmail.fake.requests)
    with pytest.raises(MessageTooLarge) as caught:
        await gmail.client.send_message(huge)
    assert "Gmail" in caught.value.message
    assert len(gmail.fake.requests) == before  # nothing went over the wire


async def test_insert_files_a_message_without_sending_it(gmail: Gmail) -> None:
    raw = raw_message("Imported")
    inserted = await gmail.client.insert_message(raw, label_ids=["INBOX"])
    assert inserted.label_ids == ("INBOX",)
    assert gmail.box.messages[inserted.id].raw == raw


async def test_watch_returns_the_history_id_and_a_seven_day_expiration(gmail: Gmail) -> None:
    watch = await gmail.client.watch("projects/crmail/topics/gmail")
    assert watch.history_id == gmail.box.history_id
    assert gmail.box.watch is not None
    assert (watch.expiration.timestamp() * 1000) == pytest.approx(
        gmail.box.watch["expiration"], abs=1
    )
    await gmail.client.stop()
    assert gmail.box.watch is None
