"""Sync of a Microsoft mailbox through Microsoft Graph, with the promises of the IMAP path.

- :mod:`.folders`: Outlook folders as crmail folders, placements, flags;
- :mod:`.ingest`: one page of a folder's delta (metadata) judged and written;
- :mod:`.rounds`: the first round (the import, resumable page by page) and the
  per-folder delta rounds after it;
- :mod:`.syncback`, :mod:`.sending`: the outbox as Graph calls and ``sendMail``;
- :mod:`.worker`: the account's loops.

See docs/providers/microsoft-graph.md.
"""
