"""Changes made in Outlook reach the CRM through each folder's delta, and the CRM's
actions reach Outlook as Graph calls."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.storage import actions, crm, outbound
from crmail.storage.models import Message, Placement
from tests.sync.graph.conftest import Outlook

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


def thread_of(outlook: Outlook, message_id: int) -> int:
    return outlook.services.db.run(lambda s: s.get_one(Message, message_id).thread_id)


async def test_archive_and_read_elsewhere_leave_the_crm_inbox_not_the_timeline(
    outlook: Outlook,
) -> None:
    outlook.world.contact(CUSTOMER)
    archived = outlook.deliver(CUSTOMER, "Archive me")
    read = outlook.deliver(CUSTOMER, "Read me")
    await outlook.sync()
    archived_mid, read_mid = outlook.message_id_of(archived), outlook.message_id_of(read)
    assert archived_mid is not None and read_mid is not None
    assert outlook.item(archived_mid) == ("open", False)

    outlook.box.move(archived, "archive")
    outlook.box.mark_read(read)
    await outlook.sync()

    assert outlook.placements(archived) == [("Archive", [])]
    assert outlook.message_id_of(archived) == archived_mid  # still stored, same message
    item = outlook.item(archived_mid)
    assert item is None or item[0] != "open"
    assert outlook.placements(read) == [("Inbox", ["\\Seen"])]
    assert outlook.item(read_mid) == ("open", True)
    assert outlook.stored() == 2


async def test_moved_out_and_back_between_rounds_keeps_its_placement(outlook: Outlook) -> None:
    outlook.world.contact(CUSTOMER)
    gid = outlook.deliver(CUSTOMER, "Round trip")
    await outlook.sync()
    mid = outlook.message_id_of(gid)
    assert mid is not None

    outlook.box.move(gid, "junkemail")
    outlook.box.move(gid, "inbox")  # Graph reports it @removed from Inbox, never re-added
    await outlook.sync()

    assert outlook.placements(gid) == [("Inbox", [])]
    assert outlook.item(mid) == ("open", False)


async def test_deleted_in_outlook_keeps_the_crm_record(outlook: Outlook) -> None:
    outlook.world.contact(CUSTOMER)
    gid = outlook.deliver(CUSTOMER, "Gone soon")
    await outlook.sync()
    mid = outlook.message_id_of(gid)
    outlook.box.delete(gid)
    await outlook.sync()
    assert outlook.placements(gid) == []
    assert mid is not None and outlook.stored() == 1


async def test_done_in_the_crm_marks_read_and_moves_to_archive(outlook: Outlook) -> None:
    outlook.world.contact(CUSTOMER)
    gid = outlook.deliver(CUSTOMER, "Please call me")
    other = outlook.deliver(CUSTOMER, "Unrelated")
    await outlook.sync()
    mid = outlook.message_id_of(gid)
    assert mid is not None
    u = outlook.services.db.run(
        lambda s: crm.get_user(s, outlook.world.workspace_id, outlook.user_id)
    )
    await outlook.services.act(lambda s: actions.done(s, u, thread_of(outlook, mid)))
    await outlook.sync()

    stored = outlook.box.messages[gid]
    assert stored.is_read and stored.folder_id == outlook.box.folder("archive").id
    assert outlook.box.messages[other].folder_id == outlook.box.folder("inbox").id
    assert outlook.placements(gid) == [("Archive", ["\\Seen"])]
    item = outlook.item(mid)
    assert item is not None and item[0] != "open" and item[1] is True
    await outlook.sync()  # the move comes back through the delta: no flip-flop
    assert outlook.item(mid) == item
    assert outlook.placements(gid) == [("Archive", ["\\Seen"])]


async def test_reply_goes_out_once_with_outlooks_sent_copy_in_the_conversation(
    outlook: Outlook,
) -> None:
    outlook.world.contact(CUSTOMER)
    asked = outlook.deliver(CUSTOMER, "Pricing?", msgid="<ask-1@client.test>")
    await outlook.sync()
    parent = outlook.message_id_of(asked)
    assert parent is not None
    sends = outlook.fake.count("POST", "/me/sendMail")
    u = outlook.services.db.run(
        lambda s: crm.get_user(s, outlook.world.workspace_id, outlook.user_id)
    )
    reply = await outlook.services.act(
        lambda s: outbound.queue_send(
            s,
            u,
            outbound.OutgoingDraft(to=(CUSTOMER,), text="Here are our prices."),
            reply_to=parent,
        )
    )
    assert isinstance(reply, outbound.SendQueued)
    await outlook.sync()

    sent_items = outlook.box.folder("sentitems").id
    sent = [m for m in outlook.box.messages.values() if m.folder_id == sent_items]
    assert len(sent) == 1  # Outlook's own copy; none appended
    assert sent[0].conversation_id == outlook.box.messages[asked].conversation_id
    assert outlook.fake.count("POST", "/me/sendMail") == sends + 1
    assert outlook.stored() == 2  # the reply is the message the CRM queued
    assert outlook.placements(sent[0].id) == [("Sent Items", ["\\Seen"])]
    assert outlook.message_id_of(sent[0].id) == reply.message_id
    state = outlook.services.db.run(lambda s: s.get_one(Message, reply.message_id).send_state)
    assert state == "sent"
    assert thread_of(outlook, reply.message_id) == thread_of(outlook, parent)
    threads = outlook.services.db.run(
        lambda s: set(
            s.scalars(
                select(Placement.remote_thread).where(Placement.account_id == outlook.account_id)
            )
        )
    )
    assert threads == {outlook.box.messages[asked].conversation_id}

    await outlook.sync()  # nothing goes out twice
    assert outlook.fake.count("POST", "/me/sendMail") == sends + 1
