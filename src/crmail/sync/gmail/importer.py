"""The initial import of a Gmail account: newest first, inside the history window.

``messages.list`` with ``q=after:<window start>`` pages through every message (All
Mail: archived mail too, not Trash or Spam), newest first. Each page is one batch:
metadata through the batch endpoint, judged, raw bytes fetched only for mail that
enters the CRM (:mod:`.ingest`), written with the import cursor.

The cursor is the internalDate of the oldest message handled (``import_floor`` of the
All Mail folder, epoch ms), not Gmail's page token: page tokens expire, while a
restart can always list ``before:`` the floor again. The second of the floor is listed
again on purpose (``before:`` counts in whole seconds); what it re-lists is stored
already and is recognised by its Gmail id.

The starting historyId (``users.getProfile``, taken before the first page) is stored
when the import starts, so changes made while it runs are caught by :mod:`.changes`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from crmail.providers.gmail import GmailClient, Message, MessagePage
from crmail.storage import mail, remote
from crmail.storage.db import Database
from crmail.sync.gmail.ingest import Cursor, GmailIngest, Outcome

#: messages checked per Gmail batch request (the batch endpoint takes 100)
PAGE = 100


def window_start(account: mail.AccountInfo, default_days: int) -> datetime:
    days = account.settings.get("history_days") or default_days
    return datetime.now(UTC) - timedelta(days=int(str(days)))


class Importer:
    def __init__(
        self, db: Database, client: GmailClient, ingest: GmailIngest, *, since: datetime
    ) -> None:
        self.db = db
        self.client = client
        self.ingest = ingest
        self.since = since
        self.page_size = PAGE
        #: Gmail's page token and the query it belongs to, while this session lasts
        self._token: str | None = None
        self._query: str | None = None
        self._next: asyncio.Future[tuple[MessagePage, list[Message], set[str]]] | None = None

    def _window_query(self) -> str:
        return f"after:{int(self.since.timestamp())}"

    async def start(self, folder_id: int) -> mail.FolderInfo:
        """(Re)start the import: the historyId to follow from, then the listing."""
        profile = await self.client.get_profile()
        estimate = await self.client.list_messages(q=self._window_query(), max_results=1)
        self.close()
        return await self.db.write(
            lambda s: remote.restart_import(
                s,
                folder_id,
                history_id=profile.history_id,
                total=estimate.result_size_estimate,
            )
        )

    async def slice(self, folder: mail.FolderInfo) -> tuple[mail.FolderInfo, Outcome]:
        """One page of the import; the All Mail folder as written with it."""
        if self._query is None or self._token is None:
            query = self._window_query()
            if folder.import_floor is not None:
                query += f" before:{folder.import_floor // 1000 + 1}"
            self._query, self._token = query, None
        fetching, self._next = self._next, None
        page, metas, gone = await (fetching or self._fetch(self._query, self._token))
        if page.next_page_token:
            # The next page's listing and metadata travel while this one is judged and
            # written (they do not depend on it; judging waits for the write).
            self._next = asyncio.ensure_future(self._fetch(self._query, page.next_page_token))
        dates = [int(m.internal_date.timestamp() * 1000) for m in metas if m.internal_date]
        floor = min(dates) if dates else folder.import_floor
        if floor is None:
            floor = int(datetime.now(UTC).timestamp() * 1000)
        complete = page.next_page_token is None
        try:
            outcome = await self.ingest.apply(
                metas, gone, cursor=Cursor(import_floor=floor, import_complete=complete)
            )
        except BaseException:
            self.close()
            raise
        self._token = page.next_page_token
        if complete:
            self._query = None
        done = mail.FolderInfo(
            folder.id,
            folder.name,
            folder.role,
            folder.uidvalidity,
            folder.uidnext,
            folder.highestmodseq,
            floor,
            complete,
        )
        return done, outcome

    async def _fetch(
        self, query: str, token: str | None
    ) -> tuple[MessagePage, list[Message], set[str]]:
        page = await self.client.list_messages(
            q=query, page_token=token, max_results=self.page_size
        )
        ids = [ref.id for ref in page.messages]
        metas, gone = await self.ingest.metadata(ids) if ids else ([], set())
        return page, metas, gone

    def close(self) -> None:
        """Drop a page fetched ahead (the session ends, or the listing starts over)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._token = self._query = None

    async def verify_inbox(self) -> None:
        """After an import (a re-sync especially), every INBOX copy is checked against
        Gmail: a message trashed, archived or deleted while our history cursor was lost
        leaves the CRM Inbox as it would have through history."""
        inbox_id = self.ingest.layout.inbox.id
        ids = await self.db.read(lambda s: remote.remote_ids_in(s, inbox_id))
        for start in range(0, len(ids), self.page_size):
            metas, gone = await self.ingest.metadata(ids[start : start + self.page_size])
            await self.ingest.apply(metas, gone)
