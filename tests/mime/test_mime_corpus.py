"""Real-world corpora: CPython's test_email data, talon's and tnefparse's sdist fixtures."""

from __future__ import annotations

import base64
import email.policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from crmail.domain.addresses import normalize_email
from crmail.mime import parse_envelope, parse_message, sanitize_html
from tests.mime.corpus import cpython_email_data

CPYTHON_FILES = sorted(cpython_email_data().iterdir())


def _ingest(raw: bytes) -> None:
    msg = parse_message(raw)
    parse_envelope(raw)
    msg.snippet()
    if msg.html is not None:
        sanitize_html(msg.html)


def test_cpython_corpus_is_there() -> None:
    assert len([p for p in CPYTHON_FILES if p.name.startswith("msg_")]) > 40


@pytest.mark.parametrize("path", CPYTHON_FILES, ids=lambda p: p.name)
def test_cpython_email_data_ingests(path: Path) -> None:
    _ingest(path.read_bytes())


def _reference_participants(raw: bytes) -> set[str] | None:
    """Participants per email.policy.default, or None when it cannot tell cleanly."""
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(raw)
        found: set[str] = set()
        for name in ("from", "sender", "reply-to", "to", "cc", "bcc"):
            for header in msg.get_all(name) or []:
                if header.defects:
                    return None
                for addr in header.addresses:
                    normal = normalize_email(addr.addr_spec)
                    if normal:
                        found.add(normal)
        return found
    except Exception:
        return None


MSG_FILES = [p for p in CPYTHON_FILES if p.name.startswith("msg_")]


def test_cpython_participants_match_the_stdlib() -> None:
    """Differential check of our address tokenizer against email.policy.default,
    on every sample whose address headers the stdlib parses without defects."""
    compared, mismatches = 0, []
    for path in MSG_FILES:
        raw = path.read_bytes()
        expected = _reference_participants(raw)
        if expected is None:
            continue
        compared += 1
        got = parse_message(raw).envelope.participants()
        if got != expected:
            mismatches.append((path.name, got, expected))
    assert compared >= 40
    assert mismatches == []


def _reference_subject_and_id(raw: bytes) -> tuple[str, str | None] | None:
    try:
        ref = BytesParser(policy=email.policy.default).parsebytes(raw)
        subject = " ".join(str(ref.get("subject", "")).split())
        message_id = str(ref.get("message-id", "")).strip().strip("<>") or None
    except Exception:
        return None
    return subject, message_id


def test_cpython_subject_and_message_id_match_the_stdlib() -> None:
    compared, mismatches = 0, []
    for path in MSG_FILES:
        raw = path.read_bytes()
        expected = _reference_subject_and_id(raw)
        if expected is None:
            continue
        compared += 1
        env = parse_message(raw).envelope
        if (env.subject, env.message_id) != expected:
            mismatches.append((path.name, (env.subject, env.message_id), expected))
    assert compared >= 40
    assert mismatches == []


def test_talon_fixtures_ingest(talon_files: list[Path]) -> None:
    eml = [p for p in talon_files if p.suffix == ".eml"]
    assert len(eml) >= 10
    for path in talon_files:
        raw = path.read_bytes()
        _ingest(raw)
        # Body-only samples (signatures, replies, html) also go in as a message body.
        subtype = "html" if path.suffix == ".html" else "plain"
        wrapped = (
            b"From: corpus@example.com\r\nSubject: " + path.name.encode() + b"\r\n"
            b"Content-Type: text/" + subtype.encode() + b"; charset=utf-8\r\n\r\n" + raw
        )
        _ingest(wrapped)
        body = parse_message(wrapped)
        assert (body.html if subtype == "html" else body.text) is not None, path.name
    for path in eml:
        msg = parse_message(path.read_bytes())
        assert not msg.parse_failed, path.name
        assert msg.envelope.from_, path.name
        assert msg.text or msg.html, path.name


def test_talon_html_fixtures_sanitize_without_script(talon_files: list[Path]) -> None:
    for path in (p for p in talon_files if p.suffix == ".html"):
        clean = sanitize_html(path.read_text("utf-8", errors="replace"))
        assert "<script" not in clean.lower(), path.name
        assert "<style" not in clean.lower(), path.name


def test_tnef_attachments_ingest(tnef_files: list[Path]) -> None:
    for path in tnef_files:
        data = path.read_bytes()
        raw = (
            b"From: outlook@example.com\r\nTo: crm@example.com\r\nSubject: tnef\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=tnef\r\n\r\n"
            b"--tnef\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--tnef\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
            b"Content-Disposition: attachment; filename=winmail.dat\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(data).replace(b"\n", b"\r\n")
            + b"--tnef--\r\n"
        )
        _ingest(raw)
        msg = parse_message(raw)
        assert msg.text == "see attachment", path.name
        [att] = msg.attachments
        assert (att.filename, att.content_type, att.size) == (
            "winmail.dat",
            "application/ms-tnef",
            len(data),
        )
        assert att.placeholder_reason is None
        # The raw TNEF stream itself is not a message: it must still not raise.
        _ingest(data)
