"""The private Dovecot lives in the package (``crmail demo`` runs one); tests use the same."""

from crmail.demo.dovecot import APP_PASSWORD_REASON, Dovecot, MailboxAccount, free_port

__all__ = ["APP_PASSWORD_REASON", "Dovecot", "MailboxAccount", "free_port"]
