"""extract_part finds the same parts parse_message lists as attachments."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from crmail.mime import parse_message
from crmail.mime.parse import extract_part
from tests.web.test_web import rich_message


def test_index_matches_parse_message_attachments() -> None:
    raw = rich_message("a@x.test", "b@y.test")
    atts = parse_message(raw).attachments
    assert [a.filename for a in atts] == [None, "evil.html", "quote.pdf"]
    for i, a in enumerate(atts):
        found = extract_part(raw, index=i)
        assert found is not None
        assert (found[0], found[1], len(found[2])) == (a.filename, a.content_type, a.size)
    assert extract_part(raw, index=3) is None


def test_content_id_lookup() -> None:
    raw = rich_message("a@x.test", "b@y.test")
    assert extract_part(raw, content_id="<LOGO@x>") == (None, "image/png", b"\x89PNG fake")
    assert extract_part(raw, content_id="missing@x") is None


def test_bodies_are_not_parts_but_a_second_text_part_is() -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@x.test", "b@y.test", "s"
    m.set_content("body")
    m.add_attachment("second text", filename=None, disposition="inline")
    raw = m.as_bytes()
    assert len(parse_message(raw).attachments) == 1
    found = extract_part(raw, index=0)
    assert found is not None and found[2].strip() == b"second text"


@pytest.mark.parametrize("raw", [b"", b"garbage", b"Content-Type: multipart/mixed\r\n\r\n--"])
def test_hostile_input_never_raises(raw: bytes) -> None:
    assert extract_part(raw, index=0) is None


def test_exactly_one_selector() -> None:
    with pytest.raises(ValueError):
        extract_part(b"x", index=0, content_id="a")
