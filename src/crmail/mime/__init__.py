"""The mime layer: parse raw messages and make their HTML safe. Pure, no IO."""

from crmail.mime.compose import (
    Composed,
    Draft,
    OutgoingAttachment,
    compose,
    reply_references,
    reply_subject,
)
from crmail.mime.parse import (
    DEFAULT_LIMITS,
    ENVELOPE_FIELDS,
    Address,
    AttachmentInfo,
    Envelope,
    Head,
    ParsedMessage,
    ParseLimits,
    normalize_subject,
    parse_envelope,
    parse_head,
    parse_message,
)
from crmail.mime.sanitize import BLOCKED_SRC_ATTRIBUTE, html_to_text, sanitize_html

__all__ = [
    "BLOCKED_SRC_ATTRIBUTE",
    "DEFAULT_LIMITS",
    "ENVELOPE_FIELDS",
    "Address",
    "AttachmentInfo",
    "Composed",
    "Draft",
    "Envelope",
    "Head",
    "OutgoingAttachment",
    "ParseLimits",
    "ParsedMessage",
    "compose",
    "html_to_text",
    "normalize_subject",
    "parse_envelope",
    "parse_head",
    "parse_message",
    "reply_references",
    "reply_subject",
    "sanitize_html",
]
