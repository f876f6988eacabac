"""CRM actions on a Gmail API account become label changes; sends go through
messages.send into the conversation, with Gmail's own Sent copy and nothing twice."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmail.storage import actions, outbound
from crmail.storage.models import Message, OutboxAction, Placement
from tests.sync.gmail.conftest import Google

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


def thread_of(google: Google, message_id: int) -> int:
    return google.services.db.run(lambda s: s.get_one(Message, message_id).thread_id)


async def test_done_in_the_crm_removes_inbox_and_unread_in_gmail(google: Google) -> None:
    google.world.contact(CUSTOMER)
    gid = google.deliver(CUSTOMER, "Please call me")
    other = google.deliver(CUSTOMER, "Unrelated")
    await google.sync()
    mid = google.message_id_of(gid)
    assert mid is not None
    u = google.user()
    await google.services.act(lambda s: actions.done(s, u, thread_of(google, mid)))
    await google.sync()

    assert google.box.messages[gid].labels == set()  # INBOX and UNREAD removed
    assert google.box.messages[other].labels == {"INBOX", "UNREAD"}
    assert google.placements(gid) == [("All Mail", ["\\Seen"])]
    item = google.item(mid)
    assert item is not None and item[0] != "open" and item[1] is True
    # The change came back through history: it stays done, no flip-flop.
    await google.sync()
    assert google.item(mid) == item


async def test_read_unread_and_delete(google: Google) -> None:
    google.world.contact(CUSTOMER)
    gid = google.deliver(CUSTOMER, "Status")
    await google.sync()
    mid = google.message_id_of(gid)
    assert mid is not None
    u = google.user()
    tid = thread_of(google, mid)
    await google.services.act(lambda s: actions.set_read(s, u, tid, True))
    await google.sync()
    assert "UNREAD" not in google.box.messages[gid].labels
    assert google.item(mid) == ("open", True)
    await google.services.act(lambda s: actions.set_read(s, u, tid, False))
    await google.sync()
    assert "UNREAD" in google.box.messages[gid].labels
    assert google.item(mid) == ("open", False)

    await google.services.act(lambda s: actions.delete_message(s, u, mid))
    await google.sync()
    assert "TRASH" in google.box.messages[gid].labels
    assert google.placements(gid) == []


async def test_an_action_on_a_message_gmail_lost_fails_alone(google: Google) -> None:
    google.world.contact(CUSTOMER)
    lost = google.deliver(CUSTOMER, "Gone soon")
    kept = google.deliver(CUSTOMER, "Still here")
    await google.sync()
    lost_id, kept_id = google.message_id_of(lost), google.message_id_of(kept)
    assert lost_id is not None and kept_id is not None
    u = google.user()
    google.box.delete(lost)  # deleted for good in Gmail, before the CRM hears of it
    await google.services.act(lambda s: actions.set_read(s, u, thread_of(google, lost_id), True))
    await google.services.act(lambda s: actions.set_read(s, u, thread_of(google, kept_id), True))
    await google.sync()

    assert "UNREAD" not in google.box.messages[kept].labels  # the next action went on
    states = dict(
        google.services.db.run(
            lambda s: s.execute(
                select(OutboxAction.message_id, OutboxAction.state).where(
                    OutboxAction.account_id == google.account_id
                )
            ).all()
        )
    )
    assert states[kept_id] == "done"
    assert states[lost_id] == "failed"
    error = google.services.db.run(
        lambda s: s.scalar(
            select(OutboxAction.last_error).where(OutboxAction.message_id == lost_id)
        )
    )
    assert error and "no longer in the mailbox" in error


async def test_send_and_reply_go_out_once_into_the_conversation(google: Google) -> None:
    google.world.contact(CUSTOMER)
    sends = google.fake.count("POST", "/messages/send")  # the fake serves the whole session
    asked = google.deliver(CUSTOMER, "Pricing?", msgid="<ask-1@client.test>")
    await google.sync()
    parent = google.message_id_of(asked)
    assert parent is not None
    u = google.user()
    reply = await google.services.act(
        lambda s: outbound.queue_send(
            s,
            u,
            outbound.OutgoingDraft(to=(CUSTOMER,), text="Here are our prices."),
            reply_to=parent,
        )
    )
    assert isinstance(reply, outbound.SendQueued)
    await google.sync()

    sent = [m for m in google.box.messages.values() if "SENT" in m.labels]
    assert len(sent) == 1  # Gmail's own copy; none appended
    assert sent[0].thread_id == google.box.messages[asked].thread_id
    assert google.fake.count("POST", "/messages/send") == sends + 1
    inserts = [
        r for r in google.fake.requests if r.method == "POST" and r.path.endswith("/me/messages")
    ]
    assert inserts == []  # no messages.insert: Gmail files the Sent copy
    assert google.stored() == 2  # the reply is the message the CRM queued, not a copy
    assert google.placements(sent[0].id) == [("All Mail", ["\\Seen"]), ("SENT", ["\\Seen"])]
    assert google.message_id_of(sent[0].id) == reply.message_id
    state = google.services.db.run(lambda s: s.get_one(Message, reply.message_id).send_state)
    assert state == "sent"
    assert thread_of(google, reply.message_id) == thread_of(google, parent)
    thread_ids = google.services.db.run(
        lambda s: set(
            s.scalars(
                select(Placement.remote_thread).where(Placement.account_id == google.account_id)
            )
        )
    )
    assert thread_ids == {google.box.messages[asked].thread_id}

    await google.sync()  # nothing goes out twice
    assert google.fake.count("POST", "/messages/send") == sends + 1
    assert google.stored() == 2


async def test_an_interrupted_send_is_found_in_gmail_not_sent_again(google: Google) -> None:
    google.world.contact(CUSTOMER)
    sends = google.fake.count("POST", "/messages/send")  # the fake serves the whole session
    u = google.user()
    q = await google.services.act(
        lambda s: outbound.queue_send(s, u, outbound.OutgoingDraft(to=(CUSTOMER,), text="Hi"))
    )
    assert isinstance(q, outbound.SendQueued)
    await google.sync()
    assert google.fake.count("POST", "/messages/send") == sends + 1

    # As if the process died after Gmail took it but before "sent" was committed.
    def back_to_sending(s):  # type: ignore[no-untyped-def]
        a = s.scalar(select(OutboxAction).where(OutboxAction.message_id == q.message_id))
        a.state, a.payload = "pending", {**a.payload, "stage": "sending"}

    google.services.db.run(back_to_sending)
    await google.sync()
    assert google.fake.count("POST", "/messages/send") == sends + 1
    state = google.services.db.run(lambda s: s.get_one(Message, q.message_id).send_state)
    assert state == "sent"
