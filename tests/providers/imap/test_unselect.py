"""Leaving a mailbox never expunges anything, with or without UNSELECT."""

from __future__ import annotations

import pytest

from crmail.providers.imap import ImapClient
from tests.providers.imap.test_client import MSG, settings
from tests.servers import Dovecot, MailboxAccount


@pytest.mark.parametrize(
    "disabled", [frozenset(), frozenset({"UNSELECT"})], ids=["unselect", "close"]
)
async def test_unselect_keeps_deleted_messages(
    dovecot: Dovecot, mailbox: MailboxAccount, disabled: frozenset[str]
) -> None:
    dovecot.append(mailbox.email, "INBOX", MSG % (1, 1), flags=["\\Deleted"])
    client = await ImapClient.connect(settings(mailbox, disabled_caps=disabled))
    try:
        await client.select("INBOX", readonly=False)
        await client.unselect()
        assert client.selected is None
        status = await client.status("INBOX")
        assert status.messages == 1
    finally:
        await client.close()
