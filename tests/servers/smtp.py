"""The SMTP relay lives in the package (``crmail demo`` sends through one); tests use the same."""

from crmail.demo.smtp import AcceptedMessage, SmtpRelay

__all__ = ["AcceptedMessage", "SmtpRelay"]
