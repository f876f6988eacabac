from __future__ import annotations

import pytest

from crmail.domain.addresses import email_domain, normalize_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  <Bob@example.org>  ", "bob@example.org"),
        ("x+tag@sub.example.co.uk", "x+tag@sub.example.co.uk"),
        ("jörg@bücher.de", "jörg@bücher.de"),
        ("a@xn--bcher-kva.de", "a@xn--bcher-kva.de"),
    ],
)
def test_normalize_email_accepts(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "<>", "alice", "@example.com", "alice@", "a@b@c", "alice smith@example.com",
     "alice@exa mple.com", "al\x00ice@example.com", "a<b@c.d", "alice@example.com\tx"],
)  # fmt: skip
def test_normalize_email_rejects(raw: str) -> None:
    assert normalize_email(raw) is None


def test_email_domain() -> None:
    assert email_domain("alice@Example.COM") == "example.com"
    assert email_domain("no-at-sign") == ""
