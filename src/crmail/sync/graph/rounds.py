"""The rounds of a Microsoft Graph account: the import, then per-folder delta.

Each synced folder has its own delta (Graph's delta is per folder):

- its first round is the import: ``messages/delta`` with ``$filter=receivedDateTime
  ge <window start>`` (newest first as Graph lists it), page by page, each page judged
  and written with the next page's link (``folders.sync_link``), so a crash resumes at
  the next page. When that link has expired meanwhile (Graph keeps a nextLink only for
  a while) the round starts over, and what it lists again is recognised by its id;
- later rounds follow the folder's delta link: every page of the round, then the
  changes applied and the new delta link stored with them, never before;
- a delta link Graph no longer knows (410 Gone, syncStateNotFound, resyncRequired)
  restarts the folder's first round; when it completes, the folder's placements it did
  not list again are checked one by one (:meth:`GraphIngest.apply` removals), so a
  message moved or deleted while our link was lost leaves the folder. Nothing is
  stored twice: messages are found again by their immutable id and dedup key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from crmail.errors import HistoryExpired
from crmail.providers.graph import DEFAULT_SELECT, GraphClient, MessageDelta, Removal
from crmail.storage import mail, remote, sync_links
from crmail.storage.db import Database
from crmail.sync.graph.ingest import GraphIngest

log = logging.getLogger(__name__)

#: what the import reads of a message: the delta's properties and its envelope headers
IMPORT_SELECT = (*DEFAULT_SELECT, "internetMessageHeaders")


def window_start(account: mail.AccountInfo, default_days: int) -> datetime:
    days = account.settings.get("history_days") or default_days
    return datetime.now(UTC) - timedelta(days=int(str(days)))


class Rounds:
    def __init__(
        self,
        db: Database,
        client: GraphClient,
        ingest: GraphIngest,
        *,
        since: datetime,
        page_size: int | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.ingest = ingest
        self.since = since
        self.page_size = page_size
        self.links: dict[int, str | None] = {}
        #: folders being read again after Graph forgot their link: the ids listed so far
        self._resync: dict[int, set[str]] = {}

    async def load(self) -> None:
        account_id = self.ingest.account.id
        self.links = await self.db.read(lambda s: sync_links.sync_links(s, account_id))

    @property
    def importing(self) -> bool:
        return any(not f.import_complete for f in self.ingest.layout.folders)

    async def round(self, pages: int) -> None:
        """A delta round of every folder; up to ``pages`` pages of any unfinished import."""
        layout = self.ingest.layout
        folders = list(layout.by_graph_id.items())
        # The followed folders' deltas are asked for together (the client keeps within
        # Graph's 4 requests per mailbox), then applied one by one in folder order: a
        # notification's round costs one round trip, not one per folder.
        following = [(g, f) for g, f in folders if f.import_complete]
        answers = await asyncio.gather(
            *(self._delta(g, f) for g, f in following), return_exceptions=True
        )
        deltas = dict(zip((g for g, _ in following), answers, strict=True))
        for graph_id, folder in folders:
            try:
                if folder.import_complete:
                    delta = deltas[graph_id]
                    if isinstance(delta, BaseException):
                        raise delta
                    folder = await self._follow(folder, delta)
                else:
                    folder = await self._import(graph_id, folder, pages)
            except HistoryExpired as exc:
                log.warning("account %s, %s: %s", self.ingest.account.id, folder.name, exc.message)
                folder = await self._restart(folder.id)
                self.links[folder.id] = None
                self._resync[folder.id] = set()
            layout.by_graph_id[graph_id] = folder

    async def _restart(self, folder_id: int) -> mail.FolderInfo:
        return await self.db.write(lambda s: sync_links.restart_folder(s, folder_id))

    async def _delta(self, graph_id: str, folder: mail.FolderInfo) -> MessageDelta:
        link = self.links.get(folder.id)
        if link is None:  # pragma: no cover - a finished import always stored its link
            raise HistoryExpired("the folder has no delta link")
        return await self.client.messages_delta(graph_id, link, page_size=self.page_size)

    async def _follow(self, folder: mail.FolderInfo, delta: MessageDelta) -> mail.FolderInfo:
        if not delta.messages and not delta.removed:
            # Nothing to apply: the new link is kept in memory only. The stored one stays
            # valid (after a crash it lists the same nothing, or later changes, applied
            # idempotently), and an idle folder costs no commit per round.
            self.links[folder.id] = delta.delta_link
            return folder
        await self.ingest.apply(
            folder, delta.messages, delta.removed, link=delta.delta_link, not_before=self.since
        )
        self.links[folder.id] = delta.delta_link
        return folder

    async def _import(self, graph_id: str, folder: mail.FolderInfo, pages: int) -> mail.FolderInfo:
        for _ in range(pages):
            link = self.links.get(folder.id)
            page = await self.client.messages_delta_page(
                graph_id,
                link,
                since=None if link else self.since,
                select=IMPORT_SELECT,
                page_size=self.page_size,
            )
            seen = self._resync.get(folder.id)
            if seen is not None:
                seen.update(m.id for m in page.messages)
            done = page.delta_link is not None
            new_link = page.delta_link or page.next_link
            await self.ingest.apply(
                folder,
                page.messages,
                page.removed,
                link=new_link,
                import_complete=True if done else None,
            )
            self.links[folder.id] = new_link
            if done:
                folder = replace(folder, import_complete=True)
                await self._after_resync(folder)
                break
        return folder

    async def _after_resync(self, folder: mail.FolderInfo) -> None:
        seen = self._resync.pop(folder.id, None)
        if seen is None:
            return
        folder_id = folder.id
        placed = await self.db.read(lambda s: remote.remote_ids_in(s, folder_id))
        stale = [Removal(rid, "deleted") for rid in placed if rid not in seen]
        if stale:
            await self.ingest.apply(folder, (), stale)
