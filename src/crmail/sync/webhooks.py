"""Webhook delivery: signed JSON POSTs to workspace endpoints, retried with backoff.

Signing follows the Standard Webhooks scheme (https://www.standardwebhooks.com/):
``Webhook-Signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`` where the
key is the base64 part of the endpoint's ``whsec_...`` secret. Receivers can check it with
any Standard Webhooks library, or with :func:`verify_signature` below.

Delivery is at-least-once: the row is marked delivered only after a 2xx answer, in its
own transaction, so a crash between the answer and that commit sends the event again
(same ``Webhook-Id``; receivers deduplicate on it). Anything else (non-2xx, redirect,
timeout, network error) is retried with exponential backoff and jitter, then given up.

SSRF guard: the server sends requests on behalf of workspace admins, so an endpoint must
not reach the host's own network. Endpoints must be https; every address the host name
resolves to must be public (not private, loopback, link-local, shared, reserved or
multicast), checked *at delivery time* (a name can change after the endpoint is saved),
and the request then goes to the checked address itself (Host header and TLS SNI keep the
name, so certificates are still verified against it) so a second DNS answer cannot swap
in an internal address between check and connect (DNS rebinding).
``Settings.webhook_allow_http_loopback`` lets http:// and loopback addresses through, for
local development and tests; private networks stay refused even then. The address rule
is the one mail servers obey too (:mod:`crmail.domain.netpolicy`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import httpx

from crmail import __version__
from crmail.crypto import SecretBox
from crmail.domain.netpolicy import AddressPolicy, IPAddress, ip_literal, is_loopback_name
from crmail.errors import CrmailError, InvalidInput, ProviderError
from crmail.providers.netcheck import allowed_addresses
from crmail.storage import events
from crmail.storage.db import Database
from crmail.storage.events import DueDelivery

log = logging.getLogger(__name__)

USER_AGENT = f"crmail-webhooks/{__version__}"
#: seconds to wait after the 1st, 2nd, ... failed attempt (the last value repeats)
BACKOFF: tuple[float, ...] = (5, 30, 120, 600, 3600, 6 * 3600, 12 * 3600)
#: attempts in all before a delivery is marked failed (~19 hours with BACKOFF)
MAX_ATTEMPTS = 8
#: how much of an error answer is kept in the delivery log
_ERROR_BODY = 300


# --- signatures --------------------------------------------------------------------------------


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(events.SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        # Not base64: use the text itself, as the Standard Webhooks libraries do.
        return raw.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``Webhook-Signature`` value for one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> bool:
    """True when ``body`` was signed with ``secret`` less than ``tolerance`` seconds ago.

    A receiver's check, kept dependency-free so it can be copied: header names are
    case-insensitive, ``Webhook-Signature`` may carry several space-separated signatures
    (one valid is enough: secrets can be rotated), and the comparison is constant-time.
    The timestamp window stops a captured request from being replayed later.
    """
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    try:
        timestamp = int(ts)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, s.encode()) for s in sigs.split() if s)


# --- the SSRF guard -----------------------------------------------------------------------------


def address_allowed(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    return AddressPolicy(allow_loopback=allow_loopback).allows(ip)


def check_url(url: str, *, allow_http_loopback: bool = False) -> str:
    """Validate an endpoint URL when it is saved; returns it normalized.

    Host names are not resolved here (that is done at every delivery); an address
    literal is checked now, so an obviously internal endpoint is refused at once.
    """
    try:
        u = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInput(f"{url!r} is not a valid URL") from exc
    if len(str(u)) > 2000:
        raise InvalidInput("the webhook URL is longer than 2000 characters")
    if u.scheme not in ("https", "http") or not u.host:
        raise InvalidInput("a webhook URL must be https://host/...")
    if u.userinfo:
        raise InvalidInput(
            "a webhook URL must not contain credentials",
            hint="verify the Webhook-Signature header instead",
        )
    ip = ip_literal(u.host)
    loopback = is_loopback_name(u.host) or (ip is not None and ip.is_loopback)
    if u.scheme == "http" and not (allow_http_loopback and loopback):
        raise InvalidInput("a webhook URL must use https")
    if loopback and not allow_http_loopback:
        raise InvalidInput("a webhook URL must not point at this server (loopback)")
    if ip is not None and not address_allowed(ip, allow_loopback=allow_http_loopback):
        raise InvalidInput("a webhook URL must not point at a private or reserved address")
    return str(u)


class Refused(CrmailError):
    """The endpoint's address is not one we may send to (SSRF guard)."""

    code = "webhook_refused"


async def resolve_checked(host: str, port: int, *, allow_loopback: bool) -> list[str]:
    """The addresses to connect to for ``host``: every address it resolves to must pass
    (the same rule as mail servers', :mod:`crmail.domain.netpolicy`)."""
    try:
        return await allowed_addresses(host, port, AddressPolicy(allow_loopback=allow_loopback))
    except ProviderError as exc:
        raise Refused(exc.message) from exc


# --- backoff --------------------------------------------------------------------------------------


def retry_delay(
    attempts: int,
    *,
    backoff: Sequence[float] = BACKOFF,
    max_attempts: int = MAX_ATTEMPTS,
    rng: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds until the next try after ``attempts`` failed ones; None: give up.

    ±20 % jitter so endpoints that failed together (a receiver outage) are not all
    retried in the same second when it comes back.
    """
    if attempts >= max_attempts:
        return None
    base = backoff[min(max(attempts, 1), len(backoff)) - 1]
    return base * rng(0.8, 1.2)


# --- the sender ---------------------------------------------------------------------------------


def body_for(d: DueDelivery) -> bytes:
    """The request body; the same bytes on every attempt (the event does not change)."""
    doc = {
        "id": d.event_id,
        "type": d.event_type,
        "created_at": d.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "workspace_id": d.workspace_id,
        "data": d.payload,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class WebhookSender:
    """Takes due deliveries and POSTs them; one asyncio task, started beside the sync service."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        allow_http_loopback: bool = False,
        poll_interval: float = 2.0,
        batch_size: int = 50,
        concurrency: int = 8,
        timeout: float = 10.0,
        backoff: Sequence[float] = BACKOFF,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retention: timedelta | None = timedelta(days=30),
        purge_interval: float = 3600.0,
    ) -> None:
        self.db = db
        self.box = box
        self.allow_http_loopback = allow_http_loopback
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.timeout = timeout
        self.backoff = tuple(backoff)
        self.max_attempts = max_attempts
        self._clock = clock or (lambda: datetime.now(UTC))
        self._transport = transport
        self._limit = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        #: finished events older than this are forgotten (None: kept forever)
        self.retention = retention
        self.purge_interval = purge_interval
        self._last_purge: datetime | None = None

    # -- lifecycle (like SyncService) --

    def wake(self) -> None:
        """Look for due deliveries now; safe to call from any thread."""
        loop = self._runner.get_loop() if self._runner else None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            # Cleared before looking, so a wake() during run_once is not lost.
            self._wake.clear()
            try:
                sent = await self.run_once()
                await self.purge_if_due()
            except Exception:
                log.exception("webhook sender pass failed")
                sent = 0
            if sent >= self.batch_size:
                continue  # a backlog: go on without waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    # -- one pass --

    async def run_once(self) -> int:
        """Attempt every delivery due now (up to ``batch_size``); returns how many."""
        now = self._clock()
        # Claimed for longer than an attempt can take (resolving, connecting, the answer).
        hold = timedelta(seconds=3 * self.timeout + 30)
        due = await self.db.write(
            lambda s: events.due_deliveries(s, now, self.batch_size, hold=hold)
        )
        # Concurrent, bounded: one slow or hanging endpoint must not hold up the others.
        results = await asyncio.gather(*(self._deliver(d) for d in due), return_exceptions=True)
        for d, r in zip(due, results, strict=True):
            if isinstance(r, Exception):
                # Not recorded: the delivery stays due and is tried again next pass.
                log.error("webhook delivery %s failed unexpectedly", d.id, exc_info=r)
        return len(due)

    async def purge_if_due(self) -> int:
        """Forget finished events past the retention, at most once per ``purge_interval``;
        returns how many. Small transactions: the single writer is never held long."""
        now = self._clock()
        if self.retention is None or (
            self._last_purge is not None
            and (now - self._last_purge).total_seconds() < self.purge_interval
        ):
            return 0
        self._last_purge = now
        before = now - self.retention
        total = 0
        while True:
            n = await self.db.write(lambda s: events.purge(s, before))
            total += n
            if n < events.PURGE_BATCH:
                break
        if total:
            log.info("forgot %d webhook events older than %s", total, before.isoformat())
        return total

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,  # a redirect could lead past the SSRF guard
                # No reuse of connections: the pool is keyed by the (pinned) address, so a
                # TLS connection opened for one host name could carry another name's request
                # on a shared address. Webhook volume does not need keep-alive.
                limits=httpx.Limits(max_keepalive_connections=0),
                transport=self._transport,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    async def _deliver(self, d: DueDelivery) -> None:
        async with self._limit:
            status, error = await self._attempt(d)
        delivered = status is not None and 200 <= status < 300
        now = self._clock()
        retry_at: datetime | None = None
        if not delivered:
            delay = retry_delay(
                d.attempts + 1, backoff=self.backoff, max_attempts=self.max_attempts
            )
            retry_at = None if delay is None else now + timedelta(seconds=delay)
        state = await self.db.write(
            lambda s: events.record_attempt(
                s,
                d.id,
                now=now,
                delivered=delivered,
                status=status,
                error=error,
                retry_at=retry_at,
            )
        )
        if not delivered:
            log.info(
                "webhook %s to endpoint %s: attempt %s failed (%s), now %s",
                d.event_id,
                d.endpoint_id,
                d.attempts + 1,
                error,
                state,
            )

    async def _attempt(self, d: DueDelivery) -> tuple[int | None, str | None]:
        """One POST; returns (HTTP status or None, error text or None)."""
        try:
            secret = self.box.open(d.sealed_secret)["secret"]
            url = httpx.URL(d.url)
            # Re-checked at every attempt: the rules (or the setting) may have changed
            # since the endpoint was saved.
            check_url(d.url, allow_http_loopback=self.allow_http_loopback)
            port = url.port or (443 if url.scheme == "https" else 80)
            addresses = await asyncio.wait_for(
                resolve_checked(url.host, port, allow_loopback=self.allow_http_loopback),
                self.timeout,
            )
        except (CrmailError, KeyError) as exc:
            return None, f"refused: {getattr(exc, 'message', exc)}"
        except TimeoutError:
            return None, f"timeout resolving {d.url}"

        body = body_for(d)
        ts = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "Webhook-Id": d.event_id,
            "Webhook-Timestamp": str(ts),
            "Webhook-Signature": sign(secret, d.event_id, ts, body),
            # Connect to the checked address but speak to the name (see module docstring).
            "Host": url.netloc.decode("ascii"),
        }
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        client = self._http()
        error = "no address"
        # Each checked address in turn, as a resolver-driven connect would (IPv6 then v4...);
        # only a failure to connect moves on: once a request was sent, that is the attempt.
        for address in addresses:
            request = client.build_request(
                "POST", url.copy_with(host=address), content=body, headers=headers
            )
            request.extensions.update(extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                error = f"ConnectError: {exc}"
                continue
            except httpx.TimeoutException:
                return None, f"timeout after {self.timeout:g}s"
            except httpx.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc}"
            try:
                if 200 <= response.status_code < 300:
                    return response.status_code, None
                # Only the start of an error answer: a hostile endpoint could send gigabytes.
                text = await _read_some(response, _ERROR_BODY)
                return response.status_code, f"HTTP {response.status_code}: {text}".strip()
            except httpx.HTTPError as exc:
                return response.status_code, f"{type(exc).__name__}: {exc}"
            finally:
                await response.aclose()
        return None, error


async def _read_some(response: httpx.Response, limit: int) -> str:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace")
