"""The one error hierarchy of crmail.

Every error that crosses a layer is a :class:`CrmailError`. Foreign errors (socket,
ssl, IMAP NO/BAD, SQL) are translated at the edge that meets them. Each error has a
stable machine ``code`` and a human ``message``; the API renders every one of them
as the same JSON shape: ``{"error": {"code": ..., "message": ..., "hint": ...}}``.
"""

from __future__ import annotations


class CrmailError(Exception):
    """Base of every crmail error."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return {"error": body}


# --- request / domain errors -------------------------------------------------


class InvalidInput(CrmailError):
    code = "invalid_input"
    http_status = 422


class NotFound(CrmailError):
    code = "not_found"
    http_status = 404


class Unauthenticated(CrmailError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(CrmailError):
    code = "forbidden"
    http_status = 403


class WrongPassword(Forbidden):
    """The current password given to change it is wrong (counted against guessing)."""


class Conflict(CrmailError):
    code = "conflict"
    http_status = 409


class RateLimited(CrmailError):
    """Too many attempts (sign-ins, sends) in a while; ``retry_after`` seconds to wait."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"try again in {retry_after} seconds")
        self.retry_after = retry_after


class AttachmentTypeNotAllowed(InvalidInput):
    """An attachment's file type is outside the provider's allow-list (checked before sending)."""

    code = "attachment_type_not_allowed"


# --- storage errors -------------------------------------------------------------


class StorageError(CrmailError):
    """The database refused a read or write: locked by another process, disk full, a
    constraint race with a concurrent writer, the server gone. The condition is outside
    the request: trying again later may succeed, and sync workers do, with backoff."""

    code = "database_error"
    http_status = 503
    retryable = True


# --- provider (mail server) errors --------------------------------------------


class ProviderError(CrmailError):
    """Something went wrong talking to a mail server or mail API."""

    code = "provider_error"
    http_status = 502
    #: True when trying again later may succeed (network, throttling, server busy).
    retryable = True


class ConnectFailed(ProviderError):
    """The server could not be reached (DNS, refused, timeout, TLS handshake)."""

    code = "server_unreachable"


class TLSFailed(ConnectFailed):
    code = "tls_failed"


class AddressNotAllowed(ProviderError):
    """The server's address is one crmail may not connect to (loopback, a private network):
    the operator's address policy, not the network, stands in the way."""

    code = "address_not_allowed"
    http_status = 422
    retryable = False


class AuthFailed(ProviderError):
    """The server refused the credentials."""

    code = "auth_failed"
    retryable = False


class AppPasswordRequired(AuthFailed):
    """The server refused a normal password because the account uses 2FA."""

    code = "app_password_required"


class ProtocolError(ProviderError):
    """The server answered something we could not understand, or NO/BAD to a command."""

    code = "protocol_error"


class SendFailed(ProviderError):
    """The SMTP server refused the message (or dropped the connection while sending it).

    ``permanent`` is True for 5xx answers: sending the same message again will fail the
    same way. 4xx answers and connection drops are temporary (``retryable``).
    ``smtp_code`` is the server's reply code when there was one.
    """

    code = "send_failed"

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        smtp_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.permanent = permanent
        self.smtp_code = smtp_code
        self.retryable = not permanent


class FolderMissing(ProviderError):
    code = "folder_missing"
    retryable = False


class MessageNotInMailbox(ProviderError):
    """An action's message is in none of the mailbox's folders any more."""

    code = "message_not_in_mailbox"
    retryable = False


# Mail APIs (Gmail, Graph) answer in HTTP; these carry what their answers mean.


class ProviderRateLimited(ProviderError):
    """The provider throttled crmail (HTTP 429, Gmail's rateLimitExceeded) and went on
    doing so after the client's backoff; ``retry_after`` is its own advice in seconds."""

    code = "provider_rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider kept answering with server errors (5xx) after the client's retries."""

    code = "provider_unavailable"


class ProviderRejected(ProviderError):
    """The provider refused a request as invalid (HTTP 400): a label that cannot be set,
    a malformed message. The same request will fail the same way."""

    code = "provider_rejected"
    http_status = 422
    retryable = False


class HistoryExpired(ProviderError):
    """The stored sync cursor (Gmail historyId, Graph delta token) is older than the
    provider keeps or unknown to it: only a full resync can continue from here."""

    code = "history_expired"
    retryable = False


class MessageTooLarge(CrmailError):
    code = "message_too_large"
    http_status = 413
