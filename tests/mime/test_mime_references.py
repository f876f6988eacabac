"""crmail's parse against a second reference, CPython's ``email`` (policy.default), on
real-world mail: CPython's own test_email samples and mail-parser's spam/malformed set.

Compared: the plain-text body, the names of attached files, the participants. Where the
two disagree, crmail's reading was chosen on purpose; each case is listed below with
why. A new disagreement fails the test: look at it, then fix crmail or add it here.

Not compared: which unnamed parts count as attachments. ``iter_attachments()`` drops
parts crmail lists on purpose (inline images of a multipart/related, forwarded
messages, a second text part), because crmail shows everything a message carries.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from crmail.domain.addresses import normalize_email
from crmail.mime import parse_message
from tests.mime.corpus import cpython_email_data

# (file, what) -> why crmail reads it differently from the stdlib
CHOSEN: dict[tuple[str, str], str] = {
    ("msg_19.txt", "text"): (
        "no header at all: the stdlib takes every byte as a body; crmail marks the "
        "message parse_failed and keeps the raw bytes (a mailbox never holds this)"
    ),
    ("mail_outlook_1", "text"): (
        "an Outlook .msg file (OLE binary), not RFC 5322 mail: the stdlib shows the "
        "binary as a text body; crmail marks it parse_failed"
    ),
    ("mail_test_12", "text"): (
        "declared GB2312 but written in UTF-8: the stdlib shows U+FFFD, crmail decodes "
        "as declared (gb18030, which accepts the bytes). Both are wrong; crmail never "
        "second-guesses a declared charset that decodes"
    ),
    ("mail_test_12", "addresses"): (
        "raw UTF-8 in To: (RFC 6532): crmail decodes it, the stdlib keeps surrogates"
    ),
    ("mail_test_15", "addresses"): (
        "From: a@x <b@y>: crmail takes the address in <>, where replies go (as Thunderbird "
        "and Gmail do); the stdlib takes the unquoted display name"
    ),
    ("mail_test_19", "addresses"): "display names that are addresses, as mail_test_15",
}


def _fold(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def _stdlib(raw: bytes) -> dict[str, object]:
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain",))
    names = set()
    for part in msg.walk():
        if part is body or (part.is_multipart() and part.get_content_maintype() != "message"):
            continue
        if filename := part.get_filename():
            names.add(filename)
    participants = set()
    for name in ("from", "sender", "reply-to", "to", "cc", "bcc"):
        for header in msg.get_all(name) or []:
            for addr in header.addresses:
                if normal := normalize_email(addr.addr_spec):
                    participants.add(normal)
    text = body.get_content() if isinstance(body, EmailMessage) else None
    return {"text": _fold(text), "names": names, "addresses": participants}


def _crmail(raw: bytes) -> dict[str, object]:
    msg = parse_message(raw)
    names = {
        a.filename
        for a in msg.attachments
        if a.filename
        and not (a.filename == "forwarded.eml" and a.content_type.startswith("message/"))
    }
    return {"text": _fold(msg.text), "names": names, "addresses": msg.envelope.participants()}


def _disagreements(files: list[Path]) -> dict[tuple[str, str], tuple[object, object]]:
    found = {}
    for path in files:
        raw = path.read_bytes()
        ours, theirs = _crmail(raw), _stdlib(raw)
        for what, expected in theirs.items():
            if what == "text" and expected is None:
                continue  # the stdlib found no text/plain body: nothing to compare
            if ours[what] != expected:
                found[(path.name, what)] = (ours[what], expected)
    return found


def test_crmail_reads_real_world_mail_like_the_stdlib(mail_parser_files: list[Path]) -> None:
    samples = sorted(cpython_email_data().glob("msg_*.txt")) + mail_parser_files
    assert len(samples) > 70
    found = _disagreements(samples)
    unexplained = {key: value for key, value in found.items() if key not in CHOSEN}
    assert unexplained == {}
    # A listed case that now agrees must leave the table.
    assert sorted(set(CHOSEN) - set(found)) == []
