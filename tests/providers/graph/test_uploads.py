"""Upload sessions against the fake Graph: the documented semantics the client relies on
(next expected ranges, 416 on a range not expected, expiry, 150 MB, no bearer token on
the upload URL) and the client's piecewise upload."""

from __future__ import annotations

import httpx
import pytest

from crmail.errors import ProviderRejected
from crmail.providers.graph import Attachment
from crmail.providers.graph.uploads import PIECE
from tests.factories import message
from tests.fakes.graph import UPLOAD_MAX, UPLOAD_PIECE_UNIT
from tests.providers.graph.conftest import Graph


async def _draft(graph: Graph) -> str:
    raw = message("me@contoso.test", "buyer@client.test", "Plans", msgid="<plans@crm.test>")
    return (await graph.client.create_draft_mime(raw)).id


async def _session(graph: Graph, draft: str, size: int) -> dict[str, object]:
    item = {"attachmentType": "file", "name": "big.pdf", "size": size}
    return await graph.client._json(
        "POST",
        f"/me/messages/{draft}/attachments/createUploadSession",
        json={"AttachmentItem": item},
    )


async def test_pieces_follow_the_next_expected_ranges_and_a_wrong_one_is_416(
    graph: Graph,
) -> None:
    draft = await _draft(graph)
    size = UPLOAD_PIECE_UNIT * 2 + 5
    session = await _session(graph, draft, size)
    assert session["nextExpectedRanges"] == ["0-"]
    url = str(session["uploadUrl"])
    data = b"x" * size
    async with httpx.AsyncClient() as http:
        first = await http.put(
            url,
            content=data[:UPLOAD_PIECE_UNIT],
            headers={"Content-Range": f"bytes 0-{UPLOAD_PIECE_UNIT - 1}/{size}"},
        )
        assert first.status_code == 200
        assert first.json()["nextExpectedRanges"] == [f"{UPLOAD_PIECE_UNIT}-{size - 1}"]
        # Not where the session expects, or not a multiple of 320 KiB: 416.
        again = await http.put(
            url,
            content=data[:UPLOAD_PIECE_UNIT],
            headers={"Content-Range": f"bytes 0-{UPLOAD_PIECE_UNIT - 1}/{size}"},
        )
        assert again.status_code == 416
        odd = await http.put(
            url,
            content=data[UPLOAD_PIECE_UNIT : UPLOAD_PIECE_UNIT + 1000],
            headers={
                "Content-Range": f"bytes {UPLOAD_PIECE_UNIT}-{UPLOAD_PIECE_UNIT + 999}/{size}"
            },
        )
        assert odd.status_code == 416
        # The bearer token must not go to the upload URL.
        leaked = await http.put(
            url,
            content=data[UPLOAD_PIECE_UNIT:],
            headers={
                "Content-Range": f"bytes {UPLOAD_PIECE_UNIT}-{size - 1}/{size}",
                "Authorization": f"Bearer {graph.tokens.current}",
            },
        )
        assert leaked.status_code == 401
        last = await http.put(
            url,
            content=data[UPLOAD_PIECE_UNIT:],
            headers={"Content-Range": f"bytes {UPLOAD_PIECE_UNIT}-{size - 1}/{size}"},
        )
        assert last.status_code == 201
    assert graph.box.message(draft).attachments == [("big.pdf", "application/octet-stream", data)]


async def test_the_client_uploads_in_pieces_and_lists_what_the_draft_holds(graph: Graph) -> None:
    draft = await _draft(graph)
    big = bytes(range(256)) * (PIECE * 2 // 256 + 77)
    await graph.client.add_attachment(draft, Attachment("big.zip", big, "application/zip"))
    await graph.client.add_attachment(draft, Attachment("a.txt", b"small", "text/plain"))
    names = [name for name, _ in await graph.client.attachments_of(draft)]
    assert names == ["big.zip", "a.txt"]
    assert graph.box.message(draft).attachments[0][2] == big
    found = await graph.client.find_draft("<plans@crm.test>")
    assert found is not None and found.id == draft
    assert await graph.client.find_draft("<other@crm.test>") is None


async def test_an_expired_session_and_over_150_mb_are_refused(graph: Graph) -> None:
    draft = await _draft(graph)
    with pytest.raises(ProviderRejected):
        await _session(graph, draft, UPLOAD_MAX + 1)
    graph.fake.upload_life = graph.fake.upload_life * 0  # sessions expire at once
    try:
        with pytest.raises(ProviderRejected, match="expired"):
            await graph.client.add_attachment(draft, Attachment("big.pdf", b"x" * (4 << 20)))
    finally:
        graph.fake.upload_life = type(graph.fake.upload_life)(minutes=15)
    assert graph.box.message(draft).attachments == []


async def test_a_sent_draft_is_found_in_sent_items_by_a_quoted_message_id(graph: Graph) -> None:
    # An apostrophe is legal in a Message-ID and must be doubled in the OData literal.
    msgid = "<o'brien+plans/1@crm.test>"
    raw = message("me@contoso.test", "buyer@client.test", "Plans", msgid=msgid)
    draft = (await graph.client.create_draft_mime(raw)).id
    assert await graph.client.find_sent(msgid) is None  # a draft is not sent
    assert await graph.client.find_draft(msgid) is not None
    await graph.client.send_draft(draft)
    sent = await graph.client.find_sent(msgid)
    assert sent is not None and sent.id != draft
    assert await graph.client.find_draft(msgid) is None
    assert await graph.client.find_sent("<o'brien+plans/2@crm.test>") is None
