"""Sync of a Google account through the Gmail API, with the promises of the IMAP path.

- :mod:`.labels`: how labels become crmail folders, placements and flags;
- :mod:`.ingest`: one batch of messages (metadata) judged and written;
- :mod:`.importer`: the initial import, newest first, resumable;
- :mod:`.changes`: incremental sync from the stored historyId;
- :mod:`.syncback`, :mod:`.sending`: the outbox as label changes and ``messages.send``;
- :mod:`.push`: Pub/Sub notifications; :mod:`.worker`: the account's loops.

See docs/providers/gmail.md.
"""
