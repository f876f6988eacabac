"""Small RFC 5322 messages for the Graph tests: to the fake's mailbox domain."""

from __future__ import annotations

from functools import partial

from tests.fakes.mail import raw_message as _raw_message

raw_message = partial(_raw_message, to="user@contoso.test")
