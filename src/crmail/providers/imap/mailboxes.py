"""Mailbox operations: listing, STATUS, SELECT/EXAMINE (with QRESYNC or CONDSTORE),
UNSELECT, NOOP and CREATE."""

from __future__ import annotations

from crmail.errors import InvalidInput, ProtocolError
from crmail.providers.imap.arguments import folder_text, mailbox_arg
from crmail.providers.imap.connection import Arg, Response
from crmail.providers.imap.error_mapping import check
from crmail.providers.imap.fetch_parser import flag_updates, parse_generic, text_of
from crmail.providers.imap.folders import SPECIAL_USE_BY_LOWER, folders_from_list
from crmail.providers.imap.reading import ReadOps
from crmail.providers.imap.responses import name_of, server_event
from crmail.providers.imap.results import FolderInfo, FolderStatus, SelectResult, ServerEvent


class MailboxOps(ReadOps):
    """Folders and the selected mailbox (SELECT may fetch changed flags, hence ReadOps)."""

    async def list_folders(self) -> list[FolderInfo]:
        async with self._lock:
            if self.has("SPECIAL-USE") and self.has("LIST-EXTENDED"):
                res = await self._cmd("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            else:
                res = await self._cmd("LIST", '""', '"*"')
            check(res, "LIST")
        return folders_from_list(res.of_kind(b"LIST"), use_flags=self.has("SPECIAL-USE"))

    async def status(self, folder: str | bytes) -> FolderStatus:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        async with self._lock:
            res = await self._cmd(
                "STATUS", mailbox_arg(folder), "(" + " ".join(items) + ")", owns=(b"STATUS",)
            )
        check(res, f"STATUS {folder_text(folder)}", folder=folder)
        values: dict[str, int] = {}
        for r in res.of_kind(b"STATUS"):
            parsed = parse_generic(r.records)
            if len(parsed) < 2 or not isinstance(parsed[-1], tuple):
                raise ProtocolError(f"bad STATUS response {r.text!r}")
            if name_of(parsed[0]) != folder_text(folder):
                # NOTIFY news of another mailbox that came with the answer: keep it.
                self._conn.notices.append(r)
                continue
            pairs = parsed[-1]
            for i in range(0, len(pairs) - 1, 2):
                values[text_of(pairs[i]).upper()] = int(pairs[i + 1])
        try:
            return FolderStatus(
                uidvalidity=values["UIDVALIDITY"],
                uidnext=values["UIDNEXT"],
                messages=values["MESSAGES"],
                unseen=values["UNSEEN"],
                highestmodseq=values.get("HIGHESTMODSEQ") or None,
            )
        except KeyError as e:
            raise ProtocolError(f"STATUS response lacks {e.args[0]}") from e

    async def select(
        self,
        folder: str | bytes,
        *,
        readonly: bool = True,
        qresync: tuple[int, int] | None = None,
    ) -> SelectResult:
        verb = "EXAMINE" if readonly else "SELECT"
        args: list[Arg] = [mailbox_arg(folder)]
        use_qresync = qresync is not None and self.qresync_enabled
        if use_qresync:
            assert qresync is not None
            args.append(f"(QRESYNC ({qresync[0]} {qresync[1]}))")
        elif self.has("CONDSTORE"):
            args.append("(CONDSTORE)")
        async with self._lock:
            self.selected = None
            res = await self._cmd(verb, *args, owns=(b"EXISTS", b"FETCH", b"VANISHED"))
            check(res, f"{verb} {folder_text(folder)}", folder=folder)
            self.selected = folder
            # Queued events were about the previously selected mailbox.
            self._conn.events.clear()
        codes: dict[str, bytes] = {}
        exists = 0
        vanished: set[int] = set()
        fetches: list[Response] = []
        for r in res.untagged:
            if r.kind == b"OK" and r.code:
                codes[r.code.decode()] = r.code_args
            elif r.kind == b"EXISTS" and r.number is not None:
                exists = r.number
            elif r.kind == b"VANISHED":
                ev = server_event(r)
                if ev is not None:
                    vanished |= ev.uids
            elif r.kind == b"FETCH":
                fetches.append(r)
        try:
            uidvalidity = int(codes["UIDVALIDITY"])
            uidnext = int(codes.get("UIDNEXT", b"0") or 0)
            modseq_text = codes.get("HIGHESTMODSEQ")
            highestmodseq = int(modseq_text) if modseq_text and "NOMODSEQ" not in codes else None
        except (KeyError, ValueError) as e:
            raise ProtocolError(f"{verb} response lacks UIDVALIDITY/UIDNEXT: {e}") from e
        changed = tuple(flag_updates(fetches))
        resynced = use_qresync and qresync is not None and qresync[0] == uidvalidity
        if (
            qresync is not None
            and not use_qresync
            and qresync[0] == uidvalidity
            and highestmodseq is not None
            and exists
        ):
            # No QRESYNC: CONDSTORE still tells which flags changed; VANISHED stays
            # unknown (resynced=False), the caller compares UID lists for that.
            ff = await self.fetch_flags("1:*", changed_since=qresync[1])
            changed = ff.updates
        return SelectResult(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            exists=exists,
            highestmodseq=highestmodseq,
            vanished=frozenset(vanished),
            changed=changed,
            readonly=(res.code or "").upper() == "READ-ONLY" or readonly,
            resynced=resynced,
        )

    async def unselect(self) -> None:
        """Leave the selected mailbox without expunging anything (UNSELECT, RFC 3691;
        else CLOSE, which expunges nothing in a mailbox opened with EXAMINE)."""
        if self.selected is None:
            return
        async with self._lock:
            if self.has("UNSELECT"):
                res = await self._cmd("UNSELECT")
            else:
                # CLOSE would expunge \Deleted messages of a read-write mailbox: reopen
                # it read-only first so that it never does.
                await self._cmd("EXAMINE", mailbox_arg(self.selected))
                res = await self._cmd("CLOSE")
            check(res, "UNSELECT")
            self.selected = None
            self._conn.events.clear()

    async def noop(self) -> list[ServerEvent]:
        async with self._lock:
            res = await self._cmd("NOOP")
            check(res, "NOOP")
            return self._drain_events()

    async def create_folder(self, name: str | bytes, special_use: str | None = None) -> None:
        args: list[Arg] = [mailbox_arg(name)]
        if special_use is not None and self.has("CREATE-SPECIAL-USE"):
            use = SPECIAL_USE_BY_LOWER.get(special_use.lower())
            if use is None:
                raise InvalidInput(f"unknown special-use {special_use!r}")
            args.append(f"(USE ({use}))")
        async with self._lock:
            res = await self._cmd("CREATE", *args)
        if not res.ok and (res.code or "").upper() == "ALREADYEXISTS":
            return
        check(res, f"CREATE {folder_text(name)}")
