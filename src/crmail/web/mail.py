"""Inbox, threads, message bodies and parts, manual links, compose."""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sqlalchemy.orm import Session

from crmail.errors import (
    AttachmentTypeNotAllowed,
    InvalidInput,
    MessageTooLarge,
    NotFound,
    RateLimited,
)
from crmail.mime import sanitize_html
from crmail.mime.compose import reply_subject
from crmail.storage import actions, crm, links, outbound
from crmail.storage import web as store
from crmail.storage.models import utcnow
from crmail.web import snooze
from crmail.web.common import (
    RAW,
    SESSION_COOKIE,
    SignInRequired,
    Web,
    WebAction,
    WebRoute,
    WebUser,
    safe_next,
    see_other,
    services_of,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


# --- Inbox -----------------------------------------------------------------------------


@router.get("/")
async def home(web: WebUser) -> Response:
    return see_other("/inbox")


@router.get("/inbox")
async def inbox(web: WebUser, view: str = "") -> Response:
    """Your Inbox, a teammate's (``view=<id>``) or everyone's (``view=all``): those read-only."""
    me = web.user

    def load(s: Session) -> tuple[list[crm.UserInfo], list[store.InboxThread], str]:
        users = store.list_users(s, me.workspace_id)
        if view == "all":
            ids, label = [u.id for u in users], "All users"
        elif view and view != str(me.id):
            if not view.isdigit():
                raise NotFound("no such user")
            other = crm.get_user(s, me.workspace_id, int(view))  # 404 for another workspace
            ids, label = [other.id], other.name or other.email
        else:
            ids, label = [me.id], "My Inbox"
        return users, store.inbox_threads(s, me, ids), label

    users, threads, label = await web.services.db.read(load)
    names = {u.id: u.name or u.email for u in users}
    actionable = view in ("", str(me.id))
    return web.render(
        "inbox.html",
        threads=threads,
        users=users,
        names=names,
        view=view or str(me.id),
        label=label,
        actionable=actionable,
        snooze_presets=snooze.PRESETS,
    )


def _back(back: str, thread_id: int) -> str:
    return safe_next(back, f"/threads/{thread_id}")


@router.post("/threads/{thread_id}/done")
async def done(
    thread_id: int, web: WebAction, back: Annotated[str, Form(max_length=2000)] = "/inbox"
) -> Response:
    me = web.user
    await web.services.act(lambda s: actions.done(s, me, thread_id))
    return see_other(_back(back, thread_id))


@router.post("/threads/{thread_id}/snooze")
async def snooze_thread(
    thread_id: int,
    web: WebAction,
    preset: Annotated[str, Form(max_length=20)],
    until: Annotated[str, Form(max_length=40)] = "",
    tz: Annotated[str, Form(max_length=60)] = "",
    back: Annotated[str, Form(max_length=2000)] = "/inbox",
) -> Response:
    me = web.user
    when = snooze.snooze_until(preset, until, tz, utcnow())
    await web.services.act(lambda s: actions.snooze(s, me, thread_id, when))
    return see_other(_back(back, thread_id))


@router.post("/threads/{thread_id}/read")
async def set_read(
    thread_id: int,
    web: WebAction,
    read: Annotated[str, Form(max_length=1)] = "1",
    back: Annotated[str, Form(max_length=2000)] = "/inbox",
) -> Response:
    me = web.user
    await web.services.act(lambda s: actions.set_read(s, me, thread_id, read == "1"))
    return see_other(_back(back, thread_id))


# --- threads and messages -----------------------------------------------------------------


@router.get("/threads/{thread_id}")
async def thread(thread_id: int, web: WebUser, images: int = 0) -> Response:
    me = web.user

    def load(s: Session) -> tuple[store.ThreadView, dict[str, list[tuple[int, str]]]]:
        view = store.thread_view(s, me, thread_id)
        choices = {
            "contact": [
                (c.id, c.name or ", ".join(c.emails))
                for c in crm.list_contacts(s, me.workspace_id, limit=200)
            ],
            "lead": [
                (lead.id, lead.name) for lead in crm.list_leads(s, me.workspace_id, limit=200)
            ],
            "deal": [(d.id, d.title) for d in crm.list_deals(s, me.workspace_id, limit=200)],
        }
        return view, choices

    view, choices = await web.services.db.read(load)
    names = {(t, i): n for t, rows in choices.items() for i, n in rows}
    return web.render(
        "thread.html",
        thread=view,
        choices=choices,
        names=names,
        images=images,
        snooze_presets=snooze.PRESETS,
    )


@router.get("/messages/{message_id}")
async def message(message_id: int, web: WebUser) -> Response:
    me = web.user
    d = await web.services.db.read(lambda s: crm.message_detail(s, me, message_id))
    return see_other(f"/threads/{d.summary.thread_id}#m{message_id}")


# A message body is hostile HTML: it runs in a sandboxed iframe (no scripts, opaque
# origin) and this policy is the second wall: nothing loads but inline styles and
# images from the message itself (or, on request, remote https images).
def body_csp(origin: str, remote_images: bool) -> str:
    img = f"data: {origin}" + (" https:" if remote_images else "")
    return (
        f"default-src 'none'; img-src cid: {img}; style-src 'unsafe-inline'; "
        "font-src 'none'; form-action 'none'; frame-ancestors 'self'; base-uri 'none'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )


_BODY_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer"><base target="_blank">
<style>body{{margin:0;padding:12px 16px;font:14px/1.5 system-ui,sans-serif;color:#1f2933;
word-wrap:break-word}}img{{max-width:100%;height:auto}}pre{{white-space:pre-wrap;font:inherit}}
img[data-crmail-blocked-src]{{display:inline-block;min-width:16px;min-height:16px;
background:#eef1f4}}</style></head><body>{body}</body></html>"""


def _cid_key(secret: str) -> bytes:
    return hashlib.sha256(b"crmail-web-cid\0" + secret.encode()).digest()


def _cid_sig(key: bytes, user_id: int, message_id: int, cid: str, exp: int, session: str) -> str:
    # Bound to the session (its stored hash) as well: signing out ends the links with it.
    msg = f"{user_id}:{message_id}:{exp}:{session}:{cid}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@router.get("/messages/{message_id}/body", tags=[RAW])
async def message_body(
    message_id: int, web: WebUser, request: Request, images: int = 0
) -> Response:
    me = web.user
    d = await web.services.db.read(lambda s: crm.message_detail(s, me, message_id))
    # Inline images are fetched by the sandboxed frame, whose opaque origin may not send
    # our SameSite cookie: their URLs carry a short-lived signature for this user instead.
    key = _cid_key(web.services.settings.secret_keys[0])
    exp = int(time.time()) + 3600
    session = store.session_hash(request.cookies.get(SESSION_COOKIE, ""))

    def cid_url(cid: str) -> str:
        sig = _cid_sig(key, me.id, message_id, cid, exp, session)
        return f"/messages/{message_id}/cid/{quote(cid, safe='')}?u={me.id}&exp={exp}&sig={sig}"

    if d.html:
        body = sanitize_html(d.html, allow_remote_images=bool(images), cid_url=cid_url)
    else:
        body = f"<pre>{html.escape(d.text or '')}</pre>"
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return Response(
        _BODY_PAGE.format(body=body),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": body_csp(origin, bool(images)),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, no-store",
        },
    )


_ACTIVE = ("html", "xml", "svg", "javascript", "ecmascript", "xsl", "css", "wasm")


def safe_content_type(ctype: str) -> str:
    """A type the browser will not run: anything that could be active content is bytes."""
    base = ctype.split(";", 1)[0].strip().lower()
    if base.count("/") != 1 or any(word in base for word in _ACTIVE) or not base.isascii():
        return "application/octet-stream"
    return base


def _download(part: store.Part, fallback: str, *, inline: bool = False) -> Response:
    name = (part.filename or fallback).replace("\r", "").replace("\n", "")
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    ctype = safe_content_type(part.content_type)
    disposition = "inline" if inline and ctype.startswith("image/") else "attachment"
    return Response(
        part.data,
        media_type=ctype,
        headers={
            "Content-Disposition": f'{disposition}; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(name, safe='')}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/messages/{message_id}/attachments/{attachment_id}", tags=[RAW])
async def attachment(message_id: int, attachment_id: int, web: WebUser) -> Response:
    me = web.user
    part = await web.services.db.read(
        lambda s: store.attachment_part(s, me, message_id, attachment_id)
    )
    return _download(part, f"attachment-{attachment_id}")


@router.get("/messages/{message_id}/cid/{content_id:path}", tags=[RAW])
async def inline_part(
    message_id: int, content_id: str, request: Request, u: int = 0, exp: int = 0, sig: str = ""
) -> Response:
    services = services_of(request)
    key = _cid_key(services.settings.secret_keys[0])
    sessions = (
        await services.db.read(lambda s: store.live_session_hashes(s, u))
        if sig and exp > time.time()
        else []
    )
    good = any(
        hmac.compare_digest(sig, _cid_sig(key, u, message_id, content_id, exp, h)) for h in sessions
    )
    if not good:
        raise SignInRequired("this image link is not valid (or expired): reload the message")

    def load(s: Session) -> store.Part:
        user = store.user_by_id(s, u)
        return store.cid_part(s, user, message_id, content_id)

    part = await services.db.read(load)
    return _download(part, "image", inline=True)


# --- manual links -------------------------------------------------------------------------


def _subject(value: str) -> tuple[str, int]:
    kind, _, ident = value.partition(":")
    if kind not in crm.SUBJECT_TYPES or not ident.isdigit():
        raise InvalidInput("choose a contact, lead or deal")
    return kind, int(ident)


@router.post("/messages/{message_id}/links")
async def link(
    message_id: int,
    web: WebAction,
    subject: Annotated[str, Form(max_length=40)],
    whole_thread: Annotated[str, Form(max_length=2)] = "",
) -> Response:
    me = web.user
    kind, ident = _subject(subject)
    await web.services.db.write(
        lambda s: links.link(s, me, message_id, kind, ident, whole_thread=bool(whole_thread))
    )
    return see_other(f"/messages/{message_id}")


@router.post("/messages/{message_id}/links/{subject_type}/{subject_id}/delete")
async def unlink(message_id: int, subject_type: str, subject_id: int, web: WebAction) -> Response:
    me = web.user
    await web.services.db.write(lambda s: links.unlink(s, me, message_id, subject_type, subject_id))
    return see_other(f"/messages/{message_id}")


# --- compose ------------------------------------------------------------------------------


def _split(addresses: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in addresses.replace(";", ",").split(",") if a.strip())


async def _compose_page(
    web: Web, reply_to: int | None, values: dict[str, str], error: str = "", status: int = 200
) -> Response:
    me = web.user
    default_from = web.services.settings.default_from or None

    def load(s: Session) -> tuple[outbound.SenderChoice | None, str]:
        try:
            sender = outbound.sender_for(s, me, "individual", None, default_from=default_from)
            problem = ""
        except InvalidInput as err:
            sender, problem = None, err.message + (f" ({err.hint})" if err.hint else "")
        return sender, problem

    sender, problem = await web.services.db.read(load)
    return web.render(
        "compose.html",
        status,
        sender=sender,
        sender_problem=problem,
        values=values,
        reply_to=reply_to,
        error=error,
    )


@router.get("/compose")
async def compose_page(web: WebUser, reply_to: int | None = None) -> Response:
    me = web.user
    values = {"to": "", "cc": "", "bcc": "", "subject": "", "body": ""}
    if reply_to is not None:
        d = await web.services.db.read(lambda s: crm.message_detail(s, me, reply_to))
        m = d.summary
        if m.direction == "inbound" and m.from_ is not None:
            values["to"] = m.from_.email
        else:
            values["to"] = ", ".join(a.email for a in m.to)
        values["subject"] = reply_subject(m.subject)
    return await _compose_page(web, reply_to, values)


@router.post("/compose")
async def send(
    web: WebAction,
    to: Annotated[str, Form(max_length=5000)] = "",
    cc: Annotated[str, Form(max_length=5000)] = "",
    bcc: Annotated[str, Form(max_length=5000)] = "",
    subject: Annotated[str, Form(max_length=1000)] = "",
    body: Annotated[str, Form(max_length=1_000_000)] = "",
    reply_to: Annotated[int | None, Form()] = None,
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    me = web.user
    values = {"to": to, "cc": cc, "bcc": bcc, "subject": subject, "body": body}
    attachments = []
    for f in files or []:
        if not f.filename:
            continue  # the empty file input of a form sent without a file
        data = await f.read()
        attachments.append(
            outbound.NewAttachment(f.filename, f.content_type or "application/octet-stream", data)
        )
    draft = outbound.OutgoingDraft(
        to=_split(to),
        cc=_split(cc),
        bcc=_split(bcc),
        subject=subject,
        text=body,
        attachments=tuple(attachments),
    )
    settings = web.services.settings
    default_from = settings.default_from or None
    limits = outbound.SendLimits(settings.max_recipients, settings.sends_per_hour)
    try:
        queued = await web.services.act(
            lambda s: outbound.queue_send(
                s,
                me,
                draft,
                kind="individual",
                reply_to=reply_to,
                default_from=default_from,
                limits=limits,
            )
        )
    except (MessageTooLarge, AttachmentTypeNotAllowed, InvalidInput, RateLimited) as err:
        message = err.message + (f" — {err.hint}" if err.hint else "")
        page = await _compose_page(web, reply_to, values, message, err.http_status)
        if isinstance(err, RateLimited):
            page.headers["Retry-After"] = str(err.retry_after)
        return page
    message_id = getattr(queued, "message_id", 0)
    return see_other(f"/messages/{message_id}" if message_id else "/inbox")
