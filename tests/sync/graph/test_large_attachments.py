"""Attachments over 3 MB through the API send endpoint on a Microsoft Graph account: a
draft, upload sessions in 320 KiB multiples, one send; refused in words without the
account's permission; a retry after a failure or a crash reuses the draft, never sends
twice or leaves a second draft; a draft gone from Drafts is sent only if its copy is in
Sent Items (deleted in Outlook: failed in words). An interrupted ``sendMail`` (the small
route) is looked for in Sent Items the same way."""

from __future__ import annotations

import base64
import email.policy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crmail.api import create_app
from crmail.storage import tokens
from crmail.storage.models import Message, OutboxAction
from crmail.sync.graph.sending import DRAFT, SENT_COPY_LOOKS
from tests.fakes.graph import UPLOAD_PIECE_UNIT
from tests.sync.graph.conftest import Outlook

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"
BIG = bytes(range(256)) * (4 * 1024 * 1024 // 256 + 1234)  # a little over 4 MB
SMALL = b"terms and conditions\n" * 100


@pytest.fixture
def api(outlook: Outlook) -> Iterator[tuple[TestClient, dict[str, str]]]:
    token = outlook.services.db.run(lambda s: tokens.issue(s, outlook.user_id, "test").secret)
    with TestClient(create_app(outlook.services)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def _file(name: str, data: bytes, content_type: str) -> dict[str, str]:
    encoded = base64.b64encode(data).decode()
    return {"filename": name, "content_type": content_type, "data_base64": encoded}


def _send(api: tuple[TestClient, dict[str, str]], *, large: bool = True) -> tuple[int, dict]:  # type: ignore[type-arg]
    client, headers = api
    body: dict[str, object] = {"to": [CUSTOMER], "subject": "The plans"}
    if large:
        body["text"] = "Attached, as promised."
        body["attachments"] = [
            _file("plans.pdf", BIG, "application/pdf"),
            _file("terms.txt", SMALL, "text/plain"),
        ]
    else:
        body["text"] = "The plans follow tomorrow."
    r = client.post("/api/messages", json=body, headers=headers)
    return r.status_code, r.json()


def _allow_large(outlook: Outlook, api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    r = client.patch(
        f"/api/accounts/{outlook.account_id}", json={"large_attachments": True}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["large_attachments"] is True


def _queue_large(outlook: Outlook, api: tuple[TestClient, dict[str, str]]) -> int:
    """The account allows large attachments; a message with one is queued: its id."""
    _allow_large(outlook, api)
    status, body = _send(api)
    assert status == 202, body
    return int(body["message_id"])


def _sends(outlook: Outlook) -> int:
    return outlook.fake.count("POST", "/send", status=202) + outlook.fake.count(
        "POST", "/me/sendMail", status=202
    )


def _drafts_made(outlook: Outlook) -> int:
    """Drafts created by POST /me/messages (the fake is shared: compare before/after)."""
    return sum(
        1
        for r in outlook.fake.requests
        if r.method == "POST" and r.path.endswith("/me/messages") and r.status == 201
    )


def _drafts(outlook: Outlook) -> int:
    drafts = outlook.box.folder("drafts").id
    return sum(1 for m in outlook.box.messages.values() if m.folder_id == drafts)


def _went_out(outlook: Outlook) -> list[tuple[str | None, bytes]]:
    sent = BytesParser(policy=email.policy.default).parsebytes(outlook.fake.sent[-1])
    return [(p.get_filename(), p.get_payload(decode=True)) for p in sent.iter_attachments()]  # type: ignore[attr-defined, misc]


def _state(outlook: Outlook, mid: int) -> str:
    return outlook.services.db.run(lambda s: s.get_one(Message, mid).send_state)


async def test_over_3_mb_goes_out_once_through_a_draft_and_upload_sessions(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    mid = _queue_large(outlook, api)
    before = _sends(outlook)
    mime_sends = outlook.fake.count("POST", "/me/sendMail")
    sessions = outlook.fake.count("POST", "/createUploadSession", status=201)
    first_put = len(outlook.fake.upload_puts)
    await outlook.sync()

    assert _state(outlook, mid) == "sent"
    assert _sends(outlook) == before + 1
    assert outlook.fake.count("POST", "/me/sendMail") == mime_sends
    assert outlook.fake.count("POST", "/createUploadSession", status=201) == sessions + 1
    puts = outlook.fake.upload_puts[first_put:]
    assert len(puts) == 2 and all(status == 200 for _, _, status in puts[:-1])
    assert puts[-1][2] == 201
    for _, header, _ in puts[:-1]:
        start, end = map(int, re.findall(r"\d+", header)[:2])
        assert (end - start + 1) % UPLOAD_PIECE_UNIT == 0
    assert _went_out(outlook) == [("plans.pdf", BIG), ("terms.txt", SMALL)]
    assert _drafts(outlook) == 0
    # Outlook's Sent Items copy joins the queued message by its Message-ID.
    await outlook.sync()
    assert outlook.stored() == 1


def test_over_3_mb_is_refused_in_words_without_the_accounts_permission(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    status, body = _send(api)
    assert status == 413, body
    assert "plans.pdf" in body["error"]["message"]
    rows = outlook.services.db.run(lambda s: s.scalars(select(OutboxAction.id)).all())
    assert rows == []


async def test_a_failed_upload_is_retried_on_the_same_draft(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    mid = _queue_large(outlook, api)
    made = _drafts_made(outlook)
    outlook.fake.fail(503, path_contains="/createUploadSession", times=10)
    await outlook.sync()
    assert _state(outlook, mid) == "sending"
    assert _drafts(outlook) == 1
    assert _drafts_made(outlook) == made + 1
    before = _sends(outlook)

    outlook.fake.faults.clear()
    _retry_now(outlook)
    await outlook.sync()
    assert _state(outlook, mid) == "sent"
    assert _drafts_made(outlook) == made + 1  # the same draft
    assert _sends(outlook) == before + 1
    assert [name for name, _ in _went_out(outlook)] == ["plans.pdf", "terms.txt"]
    assert _drafts(outlook) == 0


async def test_a_crash_before_the_draft_was_recorded_finds_it_in_drafts(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    mid = _queue_large(outlook, api)
    made = _drafts_made(outlook)
    outlook.fake.fail(503, path_contains="/createUploadSession", times=10)
    await outlook.sync()
    # As if crmail died after Graph made the draft, before its id was committed.
    _set_payload(outlook, stage="drafting", draft=None)
    outlook.fake.faults.clear()
    _retry_now(outlook)
    await outlook.sync()
    assert _state(outlook, mid) == "sent"
    assert _drafts_made(outlook) == made + 1
    assert _drafts(outlook) == 0
    assert len(_went_out(outlook)) == 2


@pytest.mark.parametrize("deleted", ["for good", "into Deleted Items"])
async def test_a_draft_deleted_in_outlook_before_the_retry_fails_in_words_unsent(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]], deleted: str
) -> None:
    mid = _queue_large(outlook, api)
    outlook.fake.fail(503, method="POST", path_contains="/send", times=10)
    await outlook.sync()
    assert _state(outlook, mid) == "sending"
    draft = str(_payload(outlook)[DRAFT])
    # Another client deletes the draft while crmail waits to try the send again.
    if deleted == "for good":
        outlook.box.delete(draft)
    else:
        outlook.box.move(draft, "deleteditems")
    sends = _sends(outlook)

    outlook.fake.faults.clear()
    # Outlook files a sent draft's copy a moment after the send: a missing copy is
    # looked for again on the next attempts before the draft counts as deleted.
    _retry_now(outlook)
    await outlook.sync()
    assert _state(outlook, mid) == "sending"
    for _ in range(SENT_COPY_LOOKS):
        if _state(outlook, mid) != "sending":
            break
        _retry_now(outlook)
        await outlook.sync()
    assert _sends(outlook) == sends
    assert _state(outlook, mid) == "failed"
    error = outlook.services.db.run(lambda s: s.get_one(Message, mid).send_error)
    assert error is not None and "deleted before it was sent" in error
    # Given up for good: not tried again on its own.
    left = outlook.services.db.run(lambda s: s.scalars(select(OutboxAction.state)).one())
    assert left == "failed"


async def test_a_crash_after_the_draft_was_sent_finds_it_in_sent_items_once(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    mid = _queue_large(outlook, api)
    await outlook.sync()
    sends = _sends(outlook)
    # As if crmail died after Graph took the send, before "sent" was committed.
    _set_payload(outlook, stage="sending", draft=_payload(outlook)[DRAFT])
    looks = outlook.fake.count("GET", "/mailFolders/sentitems/messages")
    _retry_now(outlook)
    await outlook.sync()
    assert outlook.fake.count("GET", "/mailFolders/sentitems/messages") == looks + 1
    assert _sends(outlook) == sends
    assert _state(outlook, mid) == "sent"
    await outlook.sync()
    assert outlook.stored() == 1


async def test_a_sent_copy_filed_late_is_found_on_a_later_look_and_counts_as_sent(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    mid = _queue_large(outlook, api)
    await outlook.sync()
    sends = _sends(outlook)
    draft = str(_payload(outlook)[DRAFT])
    sent_folder = outlook.box.folder("sentitems").id
    (copy,) = [m.id for m in outlook.box.messages.values() if m.folder_id == sent_folder]
    # As if crmail died after Graph took the send, before Outlook filed the Sent copy:
    # the message is in neither Drafts nor Sent Items for a moment.
    _set_payload(outlook, stage="sending", draft=draft)

    def as_interrupted(s):  # type: ignore[no-untyped-def]
        s.get_one(Message, mid).send_state = "sending"

    outlook.services.db.run(as_interrupted)
    outlook.box.move(copy, "deleteditems")
    _retry_now(outlook)
    await outlook.sync()
    assert _state(outlook, mid) == "sending"  # not called deleted on the first look
    outlook.box.move(copy, "sentitems")  # Outlook files it
    _retry_now(outlook)
    await outlook.sync()
    assert _state(outlook, mid) == "sent"
    assert _sends(outlook) == sends


# --- the small route (sendMail): an interrupted send is looked for in Sent Items ---------


async def test_an_interrupted_sendmail_found_in_sent_items_is_sent_once(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    status, body = _send(api, large=False)
    assert status == 202, body
    await outlook.sync()
    assert _state(outlook, body["message_id"]) == "sent"
    sends = _sends(outlook)
    # As if crmail died after sendMail was taken, before "sent" was committed.
    _set_payload(outlook, stage="sending", draft=None)
    _retry_now(outlook)
    await outlook.sync()
    assert _sends(outlook) == sends
    assert _state(outlook, body["message_id"]) == "sent"


async def test_an_interrupted_sendmail_not_in_sent_items_is_unknown_unsent(
    outlook: Outlook, api: tuple[TestClient, dict[str, str]]
) -> None:
    status, body = _send(api, large=False)
    assert status == 202, body
    # As if crmail died after committing "sending", before sendMail reached Graph.
    _set_payload(outlook, stage="sending", draft=None)
    sends = _sends(outlook)
    _retry_now(outlook)
    await outlook.sync()
    assert _sends(outlook) == sends
    assert _state(outlook, body["message_id"]) == "unknown"


def _payload(outlook: Outlook) -> dict[str, object]:
    return outlook.services.db.run(lambda s: dict(s.scalars(select(OutboxAction.payload)).one()))


def _set_payload(outlook: Outlook, *, stage: str, draft: object) -> None:
    def change(s):  # type: ignore[no-untyped-def]
        row = s.scalars(select(OutboxAction)).one()
        payload = {k: v for k, v in row.payload.items() if k != DRAFT}
        if draft is not None:
            payload[DRAFT] = draft
        row.payload = {**payload, "stage": stage}
        row.state = "pending"

    outlook.services.db.run(change)


def _retry_now(outlook: Outlook) -> None:
    def change(s):  # type: ignore[no-untyped-def]
        for row in s.scalars(select(OutboxAction)):
            if row.state != "done":
                row.state = "pending"
                row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)

    outlook.services.db.run(change)
