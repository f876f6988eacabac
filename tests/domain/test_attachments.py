"""Attachment policies: provider limits, SMTP SIZE, Outlook's type allow-list."""

from __future__ import annotations

import base64

import pytest

from crmail.domain.attachments import (
    MIB,
    OUTLOOK_ALLOWED_EXTENSIONS,
    AttachmentPolicy,
    attachment_budget,
    check_attachments,
    inbound_placeholder,
    policy_for,
)
from crmail.errors import AttachmentTypeNotAllowed, InvalidInput, MessageTooLarge
from crmail.mime import Address, Draft, OutgoingAttachment, compose


def test_gmail_is_25_mb_any_type() -> None:
    p = policy_for("gmail", None)
    assert p.max_total_bytes == 25 * MIB
    assert p.allowed_extensions is None
    assert "Gmail" in p.source


@pytest.mark.parametrize("key", ["microsoft365", "outlook"])
def test_microsoft_is_3_mb_with_allow_list(key: str) -> None:
    p = policy_for(key, None)
    assert p.max_total_bytes == 3 * MIB
    assert p.allowed_extensions == OUTLOOK_ALLOWED_EXTENSIONS
    assert {"pdf", "docx", "jpeg", "zip", "txt", "mp4"} <= OUTLOOK_ALLOWED_EXTENSIONS


def test_other_providers_use_the_preset_limit() -> None:
    assert policy_for("fastmail", None).max_total_bytes == 70 * MIB
    assert policy_for("icloud", None).max_total_bytes == 20 * MIB
    assert policy_for("no-such-provider", None).max_total_bytes == 25 * MIB


def test_smaller_smtp_size_wins_with_base64_overhead() -> None:
    size = 10 * MIB
    p = policy_for("other", size)
    assert p.max_total_bytes == attachment_budget(size)
    assert "SMTP server" in p.source and "10 MB" in p.source
    # The budget must really fit: a message carrying exactly that many attachment
    # bytes stays within SIZE, and base64 needs more than 4/3 of it.
    data = b"\xff" * p.max_total_bytes
    raw = compose(
        Draft(
            from_=Address("A", "a@x.example"),
            to=(Address("B", "b@x.example"),),
            subject="s",
            text="hello",
            attachments=(OutgoingAttachment("big.bin", "application/octet-stream", data),),
        )
    ).raw
    assert len(raw) <= size
    assert len(raw) > p.max_total_bytes * 4 // 3
    assert len(base64.encodebytes(data)) > p.max_total_bytes * 4 // 3


def test_larger_or_absent_smtp_size_keeps_the_preset() -> None:
    # Gmail's real SIZE encodes its 25 MB: still named Gmail, a hair under 25 MiB.
    gmail = policy_for("gmail", 35_882_577)
    assert 24.9 * MIB < gmail.max_total_bytes <= 25 * MIB
    assert gmail.source.startswith("Gmail")
    assert policy_for("gmail", 100 * MIB).max_total_bytes == 25 * MIB
    assert policy_for("other", 0).max_total_bytes == 25 * MIB  # RFC 1870: 0 = no limit
    assert policy_for("microsoft365", 1 * MIB).max_total_bytes < 1 * MIB  # SIZE applies too


def test_within_limit_passes() -> None:
    p = policy_for("gmail", None)
    check_attachments(p, [("a.pdf", 10 * MIB), ("b.mov", 15 * MIB)])
    check_attachments(p, [])


def test_one_file_over_the_limit_is_named() -> None:
    p = policy_for("gmail", None)
    with pytest.raises(MessageTooLarge) as err:
        check_attachments(p, [("small.pdf", 1 * MIB), ("video.mov", 30 * MIB)])
    msg = err.value.message
    assert '"video.mov" (30 MB)' in msg
    assert "small.pdf" not in msg
    assert "25 MB" in msg and "Gmail" in msg
    assert err.value.hint


def test_total_over_the_limit_names_every_file() -> None:
    p = policy_for("outlook", None)
    with pytest.raises(MessageTooLarge) as err:
        check_attachments(p, [("a.pdf", 2 * MIB), ("b.docx", 1 * MIB + 1)])
    msg = err.value.message
    assert '"a.pdf" (2 MB)' in msg and '"b.docx" (1 MB)' in msg
    assert "3 MB attachment limit" in msg and "Outlook" in msg
    # The total must not be shown as "3 MB" when it is over 3 MB.
    assert "total 3.00" not in msg and "total 3 MB" not in msg


def test_exactly_at_the_limit_passes() -> None:
    check_attachments(policy_for("outlook", None), [("a.pdf", 3 * MIB)])


def test_type_outside_allow_list_is_refused_with_names() -> None:
    p = policy_for("microsoft365", None)
    with pytest.raises(AttachmentTypeNotAllowed) as err:
        check_attachments(p, [("ok.PDF", 10), ("sheet.xlsx", 10), ("Makefile", 10)])
    assert isinstance(err.value, InvalidInput)
    msg = err.value.message
    assert '"sheet.xlsx"' in msg and '"Makefile"' in msg and "ok.PDF" not in msg
    assert "DOCX" in msg and "Microsoft 365" in msg


def test_type_check_comes_before_size() -> None:
    with pytest.raises(AttachmentTypeNotAllowed):
        check_attachments(policy_for("outlook", None), [("huge.exe", 50 * MIB)])


def test_no_allow_list_accepts_any_type() -> None:
    check_attachments(AttachmentPolicy(MIB), [("x.exe", 1), ("noext", 1)])


def test_negative_size_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        check_attachments(AttachmentPolicy(MIB), [("x.pdf", -1)])


def test_inbound_placeholder_only_when_over_limit() -> None:
    p = policy_for("outlook", None)
    assert inbound_placeholder(p, "small.xlsx", 100) is None  # any type is kept inbound
    assert inbound_placeholder(p, "edge.pdf", 3 * MIB) is None
    reason = inbound_placeholder(p, "scan.pdf", 7 * MIB + 300_000)
    assert reason is not None
    assert '"scan.pdf"' in reason and "7.3 MB" in reason and "3 MB" in reason
    assert "Outlook" in reason
