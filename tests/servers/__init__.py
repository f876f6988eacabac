"""Real servers for tests: a private Dovecot (IMAP/IMAPS/LMTP) and an SMTP relay into it."""

from tests.servers.dovecot import APP_PASSWORD_REASON, Dovecot, MailboxAccount
from tests.servers.smtp import AcceptedMessage, SmtpRelay

__all__ = ["APP_PASSWORD_REASON", "AcceptedMessage", "Dovecot", "MailboxAccount", "SmtpRelay"]
