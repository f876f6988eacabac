"""Changes to messages: flags (STORE), MOVE (or COPY + expunge), EXPUNGE, APPEND."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from imapclient.datetime_util import datetime_to_INTERNALDATE

from crmail.errors import MessageTooLarge
from crmail.providers.imap.arguments import flags_arg, folder_text, mailbox_arg
from crmail.providers.imap.connection import Arg, Literal
from crmail.providers.imap.error_mapping import check
from crmail.providers.imap.responses import copyuid
from crmail.providers.imap.session import ImapSession
from crmail.providers.imap.uidsets import uid_set_chunks


class WriteOps(ImapSession):
    """Changes to messages and folders the user sees; each waits for the server's OK."""

    async def store_flags(
        self, uids: Sequence[int], *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        add_arg = flags_arg(add)
        remove_arg = flags_arg(remove)
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                for op, arg in (("+FLAGS.SILENT", add_arg), ("-FLAGS.SILENT", remove_arg)):
                    if arg == "()":
                        continue
                    # CONDSTORE servers still answer .SILENT stores with FETCH (MODSEQ);
                    # that is our own change, not news.
                    res = await self._cmd("UID STORE", chunk, op, arg, owns=(b"FETCH",))
                    check(res, "UID STORE")

    async def move(self, uids: Sequence[int], dest: str | bytes) -> dict[int, int]:
        mapping: dict[int, int] = {}
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                if self.has("MOVE"):
                    res = await self._cmd("UID MOVE", chunk, mailbox_arg(dest))
                    check(res, f"MOVE to {folder_text(dest)}", folder=dest)
                else:
                    res = await self._cmd("UID COPY", chunk, mailbox_arg(dest))
                    check(res, f"COPY to {folder_text(dest)}", folder=dest)
                    await self._delete_and_expunge(chunk)
                mapping.update(copyuid(res) if self.has("UIDPLUS") else {})
        return mapping

    async def _delete_and_expunge(self, chunk: str) -> None:
        res = await self._cmd("UID STORE", chunk, "+FLAGS.SILENT", "(\\Deleted)", owns=(b"FETCH",))
        check(res, "UID STORE \\Deleted")
        if self.has("UIDPLUS"):
            res = await self._cmd("UID EXPUNGE", chunk)
        else:
            # Without UIDPLUS this also removes other messages already marked
            # \Deleted by the user; there is no narrower standard command.
            res = await self._cmd("EXPUNGE")
        check(res, "EXPUNGE")

    async def expunge(self, uids: Sequence[int]) -> None:
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                await self._delete_and_expunge(chunk)

    async def append(
        self,
        folder: str | bytes,
        raw: bytes,
        flags: Iterable[str] = (),
        when: dt.datetime | None = None,
    ) -> int | None:
        args: list[Arg] = [mailbox_arg(folder), flags_arg(flags)]
        if when is not None:
            args.append('"' + datetime_to_INTERNALDATE(when) + '"')
        args.append(Literal(raw))
        async with self._lock:
            res = await self._cmd("APPEND", *args)
        if not res.ok and (res.code or "").upper() == "TOOBIG":
            raise MessageTooLarge(f"the server refused a {len(raw)}-byte message: {res.text}")
        check(res, f"APPEND to {folder_text(folder)}", folder=folder)
        if self.has("UIDPLUS") and (res.code or "").upper() == "APPENDUID":
            parts = res.code_args.split()
            if len(parts) == 2 and parts[1].isdigit():
                return int(parts[1])
        return None
