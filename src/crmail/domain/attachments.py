"""Attachment limits per account: what may be sent, and what inbound files are too big.

Pure rules, no IO. Limits come from the provider presets (Gmail 25 MB, Microsoft
365/Outlook 3 MB...) and, when the user's SMTP server advertises one, from its SIZE
limit (RFC 1870), whichever is smaller. Everything is checked *before* sending so the
user gets a clear error naming the file instead of a bounce, a 552 or a silent drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crmail.domain.presets import preset
from crmail.errors import AttachmentTypeNotAllowed, InvalidInput, MessageTooLarge

__all__ = [
    "MIB",
    "OUTLOOK_ALLOWED_EXTENSIONS",
    "SIZE_RESERVE",
    "UPLOAD_SESSION_LIMIT",
    "AttachmentPolicy",
    "account_policy",
    "attachment_budget",
    "check_attachments",
    "check_message_size",
    "inbound_placeholder",
    "max_message_bytes",
    "policy_for",
]

MIB = 1024 * 1024

#: The file types the Outlook / Microsoft 365 sync accepts (HighLevel's help page,
#: seed 002): anything else must be refused before sending, never dropped.
OUTLOOK_ALLOWED_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "mp4", "mpeg", "zip", "rar", "pdf", "doc", "docx", "txt"}
)
_ALLOW_LISTS: dict[str, frozenset[str]] = {
    "microsoft365": OUTLOOK_ALLOWED_EXTENSIONS,
    "outlook": OUTLOOK_ALLOWED_EXTENSIONS,
}

#: Octets of an SMTP SIZE budget kept for everything but the attachments: headers,
#: text + HTML bodies, MIME part headers and boundaries of a typical CRM email.
SIZE_RESERVE = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttachmentPolicy:
    max_total_bytes: int  # decoded bytes of all attachments of one message together
    allowed_extensions: frozenset[str] | None = None  # lowercase, no dot; None = any
    source: str = ""  # who sets the limit, for messages: "Gmail / Google Workspace"


def attachment_budget(smtp_max_size: int) -> int:
    """Decoded attachment bytes that fit a message of ``smtp_max_size`` octets.

    Attachments travel base64-encoded: 4 octets per 3 bytes, plus CRLF after every
    76 characters, i.e. 78 octets per 57 bytes (x1.368).
    """
    return max(0, (smtp_max_size - SIZE_RESERVE) * 57 // 78)


def policy_for(provider_key: str, smtp_max_size: int | None) -> AttachmentPolicy:
    """The attachment policy of an account on ``provider_key`` (a preset key).

    ``smtp_max_size`` is the SIZE the account's SMTP server advertised (None or 0 when
    it advertised none; RFC 1870 uses 0 for "no fixed maximum"). Unknown provider keys
    get the "other" preset.
    """
    p = preset(provider_key)
    limit, source = p.attachment_limit, p.label
    if smtp_max_size:
        budget = attachment_budget(smtp_max_size)
        if budget < limit:
            # Providers size SIZE to their advertised attachment limit (Gmail: 35,882,577
            # octets for "25 MB"); our reserve then lands a little under it. That is the
            # same limit, so keep the provider's name in messages; a clearly smaller
            # SIZE is the server's own limit and is named as such.
            if budget < limit * 0.95:
                source = f"your SMTP server (messages up to {_mb(smtp_max_size)})"
            limit = budget
    return AttachmentPolicy(limit, _ALLOW_LISTS.get(p.key), source)


#: What a Microsoft Graph account may attach when its owner allows large attachments:
#: upload sessions take files up to 150 MB (Exchange Online's message limit too).
UPLOAD_SESSION_LIMIT = 150 * MIB


def account_policy(settings: Mapping[str, object], provider: str = "imap") -> AttachmentPolicy:
    """The policy of an account from its stored settings (preset, SIZE learned from SMTP,
    and for a Microsoft Graph account whether large attachments are allowed)."""
    if provider == "graph":
        outlook = policy_for("microsoft365", None)
        if not settings.get("large_attachments"):
            return outlook
        return AttachmentPolicy(
            UPLOAD_SESSION_LIMIT, outlook.allowed_extensions, "Microsoft 365 (upload sessions)"
        )
    size = settings.get("smtp_max_size")
    return policy_for(str(settings.get("preset") or "other"), int(str(size)) if size else None)


def _extension(filename: str) -> str:
    _, dot, ext = filename.rpartition(".")
    return ext.strip().lower() if dot else ""


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def _mb(size: int) -> str:
    return _trim(f"{size / MIB:.1f}") + " MB"


def _mb_over(size: int, limit: int) -> str:
    """``size`` in MB with enough decimals not to read as equal to ``limit``."""
    for decimals in (1, 2, 3):
        text = f"{size / MIB:.{decimals}f}"
        if float(text) * MIB > limit:
            return _trim(text) + " MB"
    return f"{size:,} bytes"


def _name(filename: str) -> str:
    return f'"{filename}"' if filename else "(unnamed file)"


def check_attachments(policy: AttachmentPolicy, files: Sequence[tuple[str, int]]) -> None:
    """Raise when ``files`` ((filename, size in bytes) pairs) cannot be sent.

    :raises AttachmentTypeNotAllowed: some file's extension is outside the allow-list
        (all such files are named).
    :raises MessageTooLarge: the files together exceed ``policy.max_total_bytes``; names
        the files that alone exceed it, or all of them when only the total does.
    """
    for filename, size in files:
        if size < 0:
            raise InvalidInput(f"{_name(filename)} has a negative size.")
    if policy.allowed_extensions is not None:
        refused = [f for f, _ in files if _extension(f) not in policy.allowed_extensions]
        if refused:
            names = ", ".join(_name(f) for f in refused)
            allowed = ", ".join(sorted(e.upper() for e in policy.allowed_extensions))
            raise AttachmentTypeNotAllowed(
                f"{policy.source or 'This account'} does not accept the file type of "
                f"{names}. Allowed types: {allowed}.",
                hint="Convert the file to an allowed type (PDF, or a ZIP archive), or "
                "share it as a link.",
            )
    total = sum(size for _, size in files)
    limit = policy.max_total_bytes
    if total <= limit:
        return
    where = f" of {policy.source}" if policy.source else ""
    too_big = [(f, s) for f, s in files if s > limit]
    if too_big:
        names = ", ".join(f"{_name(f)} ({_mb_over(s, limit)})" for f, s in too_big)
        verb = "is" if len(too_big) == 1 else "are"
        message = f"{names} {verb} larger than the {_mb(limit)} attachment limit{where}."
    else:
        names = ", ".join(f"{_name(f)} ({_mb(s)})" for f, s in files)
        message = (
            f"The attachments {names} total {_mb_over(total, limit)}, more than the "
            f"{_mb(limit)} attachment limit{where}."
        )
    raise MessageTooLarge(
        message, hint="Share large files as a link, or send them in several emails."
    )


def max_message_bytes(policy: AttachmentPolicy) -> int:
    """Octets of a whole message, as sent, that the policy allows (the inverse of
    :func:`attachment_budget`: the attachment limit once encoded, plus the reserve)."""
    return policy.max_total_bytes * 78 // 57 + SIZE_RESERVE


def check_message_size(policy: AttachmentPolicy, size: int) -> None:
    """Raise :class:`MessageTooLarge` when a message of ``size`` octets (as sent) is over
    the policy: a huge body is refused as clearly as a huge attachment."""
    limit = max_message_bytes(policy)
    if size <= limit:
        return
    where = f" of {policy.source}" if policy.source else ""
    raise MessageTooLarge(
        f"The message is {_mb_over(size, limit)} as sent, more than the {_mb(limit)} "
        f"message size limit{where}.",
        hint="Shorten the text, or share large content and files as links.",
    )


def inbound_placeholder(policy: AttachmentPolicy, filename: str, size: int) -> str | None:
    """Why an inbound attachment is shown as a placeholder, or None when it is kept.

    Only the size counts: the allow-list limits what the provider's sync *sends*; a
    received file of another type is still stored. The message itself is always kept.
    """
    if size <= policy.max_total_bytes:
        return None
    where = f" of {policy.source}" if policy.source else ""
    return (
        f"{_name(filename)} ({_mb_over(size, policy.max_total_bytes)}) is not available "
        f"in the CRM: it is over the {_mb(policy.max_total_bytes)} attachment limit{where}. "
        "The message is kept; open it in your mailbox to get the file."
    )
