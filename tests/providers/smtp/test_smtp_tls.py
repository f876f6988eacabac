"""SMTP's TLS context: one per trust configuration, shared by every send, built off the loop.

SMTP trusts the system store plus an account's CA file (IMAP trusts the CA file alone):
its contexts come from ``providers/tls.py`` keyed by both. Real TLS sends through the
aiosmtpd relay on loopback, with the test CA copied per test so each starts uncached.
"""

from __future__ import annotations

import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from crmail.errors import TLSFailed
from crmail.providers.smtp import SmtpSettings, send
from crmail.providers.tls import client_context
from tests.providers.smtp.test_smtp import PASSWORD, USER, message, relay
from tests.servers import Dovecot, MailboxAccount, SmtpRelay

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def starttls_relay(dovecot: Dovecot) -> Iterator[SmtpRelay]:
    r = relay(dovecot, tls="starttls", users={USER: PASSWORD}).start()
    yield r
    r.stop()


@pytest.fixture
def ca_copy(dovecot: Dovecot, tmp_path: Path) -> Path:
    """The test CA under a path no other test used: its context is not cached yet."""
    path = tmp_path / "ca.pem"
    shutil.copyfile(dovecot.ca_file, path)
    return path


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The thread of every ``ssl.create_default_context`` call from here on."""
    seen: list[threading.Thread] = []
    real: Callable[..., ssl.SSLContext] = ssl.create_default_context

    def recording(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", recording)
    return seen


@pytest.fixture
def contexts_used(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext | None]:
    """The TLS context each SMTP client was given (a real client, only watched)."""
    used: list[ssl.SSLContext | None] = []

    class Watched(aiosmtplib.SMTP):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            used.append(kwargs.get("tls_context"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(aiosmtplib, "SMTP", Watched)
    return used


def settings(r: SmtpRelay, ca_file: Path) -> SmtpSettings:
    return SmtpSettings(
        host=r.host,
        port=r.port,
        security="starttls",
        username=USER,
        password=PASSWORD,
        ca_file=str(ca_file),
        timeout=10.0,
    )


async def _send(s: SmtpSettings, to: MailboxAccount) -> None:
    result = await send(s, mail_from=USER, recipients=[to.email], raw=message(to.email))
    assert result.accepted == (to.email,)


async def test_sends_with_the_same_settings_share_one_context_built_off_the_loop(
    starttls_relay: SmtpRelay,
    ca_copy: Path,
    mailbox: MailboxAccount,
    builds: list[threading.Thread],
    contexts_used: list[ssl.SSLContext | None],
) -> None:
    loop_thread = threading.current_thread()
    s = settings(starttls_relay, ca_copy)
    await _send(s, mailbox)
    await _send(s, mailbox)
    assert len(starttls_relay.accepted) == 2  # real TLS sends, verified against the CA file
    first, second = contexts_used
    assert first is not None and first is second
    assert first is await client_context(str(ca_copy), with_system_store=True)
    assert len(builds) == 1, "one build for two sends"
    assert loop_thread not in builds, "the context was built on the event loop"


async def test_a_replaced_ca_file_gets_a_new_context(
    starttls_relay: SmtpRelay,
    ca_copy: Path,
    mailbox: MailboxAccount,
    contexts_used: list[ssl.SSLContext | None],
) -> None:
    s = settings(starttls_relay, ca_copy)
    await _send(s, mailbox)
    # A renewed CA written over the old file (here the same CA, one byte longer).
    ca_copy.write_bytes(ca_copy.read_bytes() + b"\n")
    await _send(s, mailbox)
    first, second = contexts_used
    assert first is not None and second is not None and first is not second
    assert len(starttls_relay.accepted) == 2


async def test_smtp_trusts_the_system_store_beside_the_ca_file_imap_the_ca_file_alone(
    ca_copy: Path,
) -> None:
    smtp = await client_context(str(ca_copy), with_system_store=True)
    imap = await client_context(str(ca_copy))
    assert smtp is not imap
    system = await client_context(None)
    assert system is await client_context(None, with_system_store=True)
    # What each trusts, as loaded: the CA file's certificate is in both, the system's
    # bundle (where the machine has one) only beside it.
    assert len(imap.get_ca_certs()) == 1
    assert len(smtp.get_ca_certs()) == len(system.get_ca_certs()) + 1


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "garbage"])
async def test_an_unusable_ca_file_is_tls_failed_with_its_hint(
    starttls_relay: SmtpRelay, tmp_path: Path, content: bytes | None
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(TLSFailed) as err:
        await send(
            settings(starttls_relay, ca),
            mail_from=USER,
            recipients=["x@example.test"],
            raw=message("x@example.test"),
        )
    assert f"The CA file {ca} cannot be used" in err.value.message
    assert err.value.hint is not None and "TLS" in err.value.hint
    assert not starttls_relay.accepted
