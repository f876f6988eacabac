"""Reading and two-way actions against the fake Graph: metadata with headers, MIME,
read/unread, move, archive (created when missing), delete into Deleted Items, sending
and replying in the same conversation, Outlook's attachment policy."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import pytest

from crmail.errors import (
    AttachmentTypeNotAllowed,
    FolderMissing,
    MessageNotInMailbox,
    MessageTooLarge,
    ProviderRejected,
)
from crmail.providers.graph import Address, Attachment, OutgoingMail
from tests.providers.graph.conftest import Graph, make_graph
from tests.providers.graph.mail import raw_message

MB = 1024 * 1024


async def test_me_names_the_mailbox(graph: Graph) -> None:
    me = await graph.client.me()
    assert me.address == graph.box.address and me.id == graph.box.user_id


async def test_message_metadata_with_headers_and_its_mime(graph: Graph) -> None:
    raw = raw_message("Quote", message_id="<q1@example.test>")
    msg = graph.box.deliver(raw)
    meta = await graph.client.get_message(msg.id)
    assert meta.internet_message_id == "<q1@example.test>"
    assert meta.header("subject") == "Quote" and meta.header("Message-ID") == "<q1@example.test>"
    assert await graph.client.get_mime(msg.id) == raw


async def test_a_missing_message_is_message_not_in_mailbox(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Doomed"))
    graph.box.delete(msg.id)
    with pytest.raises(MessageNotInMailbox):
        await graph.client.get_message(msg.id)
    with pytest.raises(MessageNotInMailbox):
        await graph.client.update_message(msg.id, is_read=True)


async def test_read_unread_and_move(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Flags"))
    assert (await graph.client.update_message(msg.id, is_read=True)).is_read is True
    assert graph.box.messages[msg.id].is_read
    assert (await graph.client.update_message(msg.id, is_read=False)).is_read is False
    clients = graph.box.create_folder("Clients")
    moved = await graph.client.move_message(msg.id, clients.id)
    assert moved.id == msg.id and moved.parent_folder_id == clients.id


async def test_delete_moves_to_deleted_items(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Bin"))
    await graph.client.delete_message(msg.id)
    assert graph.box.messages[msg.id].folder_id == graph.box.folder("deleteditems").id


async def test_done_marks_read_and_archives_creating_archive_when_missing(
    graph: Graph,
) -> None:
    other = make_graph(graph.fake, graph.url, with_archive=False)
    try:
        msg = other.box.deliver(raw_message("Done"))
        with pytest.raises(FolderMissing):
            await other.client.folder("archive")
        archived = await other.client.archive_message(msg.id)
        folder = other.box.folders[archived.parent_folder_id or ""]
        assert folder.display_name == "Archive" and other.box.messages[msg.id].is_read
        # Only once: the second Done finds the folder it created.
        second = other.box.deliver(raw_message("Done too"))
        assert (await other.client.archive_message(second.id)).parent_folder_id == folder.id
        assert sum(f.display_name == "Archive" for f in other.box.folders.values()) == 1
    finally:
        await other.client.aclose()


async def test_send_mail_files_a_sent_items_copy(graph: Graph) -> None:
    mail = OutgoingMail(
        "Proposal",
        "Here it is.",
        to=[Address("bob@example.test", "Bob")],
        attachments=[Attachment("offer.pdf", b"%PDF-1.4 tiny", "application/pdf")],
    )
    await graph.client.send_mail(mail)
    sent_folder = graph.box.folder("sentitems").id
    copies = [m for m in graph.box.messages.values() if m.folder_id == sent_folder]
    assert len(copies) == 1
    parsed = copies[0].parsed
    assert parsed["Subject"] == "Proposal" and "bob@example.test" in parsed["To"]
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["offer.pdf"]


async def test_a_reply_stays_in_the_conversation_with_a_sent_copy(graph: Graph) -> None:
    original = graph.box.deliver(
        raw_message("Question", sender="Carol <carol@example.test>", message_id="<c1@x.test>")
    )
    draft = await graph.client.reply(original.id, "Answer.")
    sent_folder = graph.box.folder("sentitems").id
    sent = [m for m in graph.box.messages.values() if m.folder_id == sent_folder]
    assert len(sent) == 1 and draft.id not in graph.box.messages  # the draft was sent
    assert sent[0].conversation_id == original.conversation_id
    parsed = sent[0].parsed
    assert parsed["In-Reply-To"] == "<c1@x.test>" and parsed["Subject"] == "RE: Question"
    assert "carol@example.test" in parsed["To"]
    # Delta on Sent Items reports it in the conversation crmail already knows.
    delta = await graph.client.messages_delta("sentitems")
    assert [m.conversation_id for m in delta.messages] == [original.conversation_id]


async def test_mime_send_keeps_the_bytes_and_threads_by_references(graph: Graph) -> None:
    original = graph.box.deliver(raw_message("Thread", message_id="<t1@x.test>"))
    raw = raw_message("Re: Thread", to="alice@example.test", in_reply_to="<t1@x.test>")
    await graph.client.send_mime(raw)
    assert graph.fake.sent[-1] == raw
    sent_folder = graph.box.folder("sentitems").id
    copy = next(m for m in graph.box.messages.values() if m.folder_id == sent_folder)
    assert copy.conversation_id == original.conversation_id
    parsed = BytesParser(policy=email.policy.default).parsebytes(copy.mime)
    assert parsed["Subject"] == "Re: Thread"


async def test_sending_without_recipients_is_rejected_in_words(graph: Graph) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await graph.client.send_mail(OutgoingMail("Nobody", "Hi", to=[]))
    assert "recipient" in caught.value.message


async def test_outlook_attachment_policy_is_checked_before_sending(graph: Graph) -> None:
    before = graph.fake.count("POST")
    exe = OutgoingMail(
        "Tool", "x", to=[Address("bob@example.test")], attachments=[Attachment("setup.exe", b"MZ")]
    )
    with pytest.raises(AttachmentTypeNotAllowed) as caught:
        await graph.client.send_mail(exe)
    assert '"setup.exe"' in caught.value.message and "PDF" in caught.value.message
    big = OutgoingMail(
        "Big",
        "x",
        to=[Address("bob@example.test")],
        attachments=[Attachment("scan.pdf", b"0" * (3 * MB + 1))],
    )
    with pytest.raises(MessageTooLarge) as too_big:
        await graph.client.send_mail(big)
    assert "3 MB" in too_big.value.message
    original = graph.box.deliver(raw_message("Reply with file"))
    with pytest.raises(AttachmentTypeNotAllowed):
        await graph.client.reply(original.id, "x", attachments=[Attachment("a.js", b"1")])
    assert graph.fake.count("POST") == before  # nothing reached Microsoft
