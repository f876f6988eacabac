"""A typed, capability-aware asyncio IMAP client for syncing mailboxes.

Wire handling lives in :mod:`.connection`; the IMAP grammar (FETCH items, LIST,
STATUS...) is parsed by imapclient's pure parser (:mod:`.fetch_parser`,
:mod:`.responses`, :mod:`.folders`) into the frozen dataclasses of :mod:`.results`;
every failure is mapped into :mod:`crmail.errors` (:mod:`.error_mapping`). The
session (:mod:`.session`: connecting, login, capabilities) and its operation groups
(:mod:`.mailboxes`, :mod:`.reading`, :mod:`.writing`, :mod:`.watching`) make up
:class:`ImapClient`.

Every optional extension has a fallback so the client works against minimal
servers; ``ImapSettings.disabled_caps`` hides capabilities so the fallbacks can be
tested against a full-featured server.
"""

from __future__ import annotations

from crmail.providers.imap.mailboxes import MailboxOps
from crmail.providers.imap.watching import WatchOps
from crmail.providers.imap.writing import WriteOps


class ImapClient(MailboxOps, WriteOps, WatchOps):
    """One logged-in IMAP session. Methods are serialised by an internal lock."""
