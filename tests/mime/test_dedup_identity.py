"""The dedup key: Message-ID and From when there is one, else headers and body."""

from __future__ import annotations

import pytest

from crmail.domain.identity import dedup_key
from crmail.mime import parse_message
from crmail.mime.keys import body_digest, envelope_key, needs_body

ALERT = (
    b"From: monitor@ops.test\r\nTo: team@x.test\r\nSubject: ALERT disk\r\n"
    b"Date: Tue, 01 Dec 2026 03:00:00 +0000\r\n\r\n"
)


def key(raw: bytes) -> str:
    return envelope_key(parse_message(raw).envelope, raw)


def test_no_message_id_bodies_tell_messages_apart() -> None:
    assert key(ALERT + b"/var 91%\r\n") != key(ALERT + b"/home 99%\r\n")


def test_copies_of_one_message_share_a_key() -> None:
    one = ALERT + b"/var 91%\r\nline two\r\n"
    server_copy = (
        b"Return-Path: <monitor@ops.test>\r\nDelivered-To: ann@x.test\r\n"
        b"X-Delivered-To: ann@x.test\r\nReceived: from a by b; Tue, 1 Dec 2026 03:00:01\r\n"
        b"Status: RO\r\nX-Keywords: $Junk\r\nX-Spam-Score: 0.1\r\n"
        + one.replace(b"\r\n", b"\n")
        + b"\n"
    )
    assert key(one) == key(server_copy)


def test_headers_count_too() -> None:
    other_subject = ALERT.replace(b"ALERT disk", b"ALERT cpu")
    assert key(ALERT + b"x") != key(other_subject + b"x")


def test_message_id_keys_do_not_read_the_body() -> None:
    raw = b"Message-ID: <m1@x>\r\nFrom: a@x.test\r\n\r\nbody"
    env = parse_message(raw).envelope
    assert not needs_body(env)
    assert envelope_key(env) == envelope_key(env, raw) == key(raw.replace(b"body", b"other"))


def test_a_key_without_message_id_or_body_is_refused() -> None:
    env = parse_message(ALERT).envelope
    assert needs_body(env)
    with pytest.raises(ValueError):
        envelope_key(env)
    with pytest.raises(ValueError):
        dedup_key(None, "a@x.test", date=None, subject="", recipients=[])


def test_body_digest_ignores_line_ends_and_trailing_blank_lines() -> None:
    assert body_digest(b"A: b\r\n\r\nx\r\ny\r\n\r\n") == body_digest(b"A: b\n\nx\ny")
    assert body_digest(b"A: b\n\nx\ny") != body_digest(b"A: b\n\nx\n\ny")


def test_a_message_id_key_starts_with_the_message_id_s_own_digest() -> None:
    # Threading finds a message by Message-ID through the unique key's index: every
    # sender's copy under one Message-ID sorts inside the Message-ID's key range.
    from crmail.domain.identity import key_range, message_id_prefix

    ann = dedup_key("m1@x", "ann@x.test", date=None, subject="", recipients=[])
    bob = dedup_key("m1@x", "bob@x.test", date=None, subject="", recipients=[])
    other = dedup_key("m2@x", "ann@x.test", date=None, subject="", recipients=[])
    assert ann != bob and len(ann) == len(bob) == 64
    lo, hi = key_range("m1@x")
    assert lo == message_id_prefix("m1@x") and lo <= ann < hi and lo <= bob < hi
    assert not lo <= other < hi
    assert set(ann) <= set("0123456789abcdef")
