"""Which leaves of a message are its body (text and html) and which are attachments.

Decided on part headers alone, so :func:`crmail.mime.parse.parse_message` and
:func:`crmail.mime.parse.extract_part` agree on the attachment list and its order.
"""

from __future__ import annotations

from dataclasses import dataclass

from crmail.mime.structure import Leaf

__all__ = ["BodyChoice", "choose_body"]

_BODY_TYPES = ("text/plain", "text/html")

_OTHER_RENDERINGS = frozenset(
    {
        "text/plain",
        "text/html",
        "text/enriched",
        "text/richtext",
        "text/watch-html",
        "text/x-amp-html",
    }
)


@dataclass(frozen=True, slots=True)
class BodyChoice:
    text: Leaf | None
    html: Leaf | None
    attachments: tuple[Leaf, ...]


def choose_body(leaves: list[Leaf]) -> BodyChoice:
    """The first unnamed text/plain and text/html parts not marked as attachments are the
    body; the others are attachments, except further renderings inside an alternative.

    When that finds no body, the first text part not marked as an attachment is the
    body although it has a filename (mailers name the only text of a message, e.g.
    ``Content-Disposition: inline; filename=message.txt``); it stays an attachment too.
    """
    text: Leaf | None = None
    html: Leaf | None = None
    attachments: list[Leaf] = []
    for leaf in leaves:
        part = leaf.part
        ctype = part.content_type
        if ctype in _BODY_TYPES and part.disposition != "attachment" and not part.filename:
            if ctype == "text/plain" and text is None:
                text = leaf
                continue
            if ctype == "text/html" and html is None:
                html = leaf
                continue
        if leaf.in_alternative and ctype in _OTHER_RENDERINGS and not part.filename:
            continue  # another rendering of a body we already have (text/calendar is kept)
        attachments.append(leaf)
    if text is None and html is None:
        for leaf in attachments:
            if leaf.part.content_type in _BODY_TYPES and leaf.part.disposition != "attachment":
                if leaf.part.content_type == "text/plain":
                    text = leaf
                else:
                    html = leaf
                break
    return BodyChoice(text, html, tuple(attachments))
