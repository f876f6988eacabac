"""What every mail API client (Gmail, Microsoft Graph) does the same way over HTTP.

A bearer token from an *access token source* on every request and, after a 401, one
call to ``refresh_access_token`` (the OAuth layer decides how; afterwards the source
must hand out the fresh token too). Throttling is retried with jittered backoff that
honours Retry-After; server errors and dropped connections a bounded number of times.
What counts as throttling, and which :mod:`crmail.errors` exception a final failure
becomes, is each provider's own :class:`ErrorRules`.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypedDict, TypeVar

import httpx

from crmail.errors import ConnectFailed, ProtocolError, ProviderError

__all__ = [
    "AccessTokenSource",
    "ApiClient",
    "AuthorizedHttp",
    "ErrorRules",
    "HttpOptions",
    "NotFoundFactory",
    "Retry",
    "RetryPolicy",
    "get_public_json",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

#: Returns a bearer token valid now (the OAuth layer caches and renews it).
AccessTokenSource = Callable[[], Awaitable[str]]

#: What a 404 means depends on the request: a message gone, a cursor expired...
NotFoundFactory = Callable[[str], ProviderError]


class Retry(enum.Enum):
    NO = "no"
    THROTTLED = "throttled"  # back off (honouring Retry-After), then again
    SERVER = "server"  # a bounded number of times
    REFRESH_TOKEN = "refresh_token"  # once, with a fresh access token


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    throttled_attempts: int = 5  # retries after 429 / a provider's rate-limit answer
    server_attempts: int = 3  # retries after 5xx or a dropped connection
    base_delay: float = 1.0  # seconds; doubles per retry
    max_delay: float = 32.0
    jitter: float = 1.0  # up to this many seconds added to a Retry-After
    #: A Retry-After longer than this is not waited out inside one call: the error is
    #: raised with ``retry_after`` so the worker reschedules instead of holding a slot.
    max_wait: float = 60.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Failure(Protocol):
    """One non-2xx answer as a provider reads it."""

    @property
    def status(self) -> int: ...

    @property
    def retry_after(self) -> float | None: ...


F = TypeVar("F", bound=Failure)


@dataclass(frozen=True, slots=True)
class ErrorRules(Generic[F]):
    """A provider's reading of its error answers."""

    service: str  # "Gmail", "Microsoft Graph": for logs and messages
    read: Callable[[int, bytes, Mapping[str, str]], F]
    classify: Callable[[F], Retry]
    to_error: Callable[[F, NotFoundFactory | None], ProviderError]
    unreachable: str  # the ConnectFailed message when the service cannot be reached


class HttpOptions(TypedDict, total=False):
    """How a client of :class:`AuthorizedHttp` talks HTTP, the same for every API
    (tests hand in their own ``sleep``, ``rng`` or ``http``)."""

    refresh_access_token: AccessTokenSource | None
    http: httpx.AsyncClient | None
    retry: RetryPolicy | None
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random | None
    timeout: float


class AuthorizedHttp(Generic[F]):
    """Bearer-authenticated requests to one API with the shared retry rules.

    ``concurrency`` caps the requests in flight at once (Graph allows four per
    mailbox); a request waiting out a backoff does not hold a slot.
    """

    def __init__(
        self,
        rules: ErrorRules[F],
        access_token: AccessTokenSource,
        *,
        base_url: str,
        refresh_access_token: AccessTokenSource | None = None,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        timeout: float = 60.0,
        headers: Mapping[str, str] | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.rules = rules
        self._access_token = access_token
        self.refresh_access_token = refresh_access_token
        self.base = base_url.rstrip("/")
        self._origin = httpx.URL(self.base).copy_with(path="/", query=None, fragment=None)
        self.timeout = timeout
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._rng = rng or random.Random()
        self._headers = dict(headers or {})
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after + self._rng.uniform(0, self.retry.jitter)
        ceiling = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def may_wait(self, throttled: int, retry_after: float | None) -> bool:
        return throttled < self.retry.throttled_attempts and (
            retry_after is None or retry_after <= self.retry.max_wait
        )

    def url(self, path_or_url: str) -> str:
        """A path under the base URL, or an absolute URL the API handed out (a next
        page link) -- which must point at the same API: the bearer token goes with it."""
        if not path_or_url.startswith(("http://", "https://")):
            return self.base + path_or_url
        given = httpx.URL(path_or_url)
        if given.copy_with(path="/", query=None, fragment=None) != self._origin:
            raise ProtocolError(
                f"{self.rules.service} handed out a link to another server; crmail did "
                "not follow it."
            )
        return path_or_url

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self._slots is None:
            return await self._http.request(method, url, **kwargs)
        async with self._slots:
            return await self._http.request(method, url, **kwargs)

    async def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        not_found: NotFoundFactory | None = None,
    ) -> httpx.Response:
        url = self.url(path_or_url)
        throttled = server = 0
        refreshed = False
        token = await self._access_token()
        while True:
            try:
                response = await self._request(
                    method,
                    url,
                    # None, not []: httpx drops a URL's own query (a next page
                    # link's token) when given an empty parameter list.
                    params=list(params) or None,
                    json=json,
                    content=content,
                    headers={
                        **self._headers,
                        **(headers or {}),
                        "Authorization": f"Bearer {token}",
                    },
                )
            except httpx.TransportError as exc:
                if server < self.retry.server_attempts:
                    server += 1
                    await self.sleep(self.backoff(server, None))
                    continue
                raise ConnectFailed(self.rules.unreachable) from exc
            if response.is_success:
                return response
            failure = self.rules.read(response.status_code, response.content, response.headers)
            kind = self.rules.classify(failure)
            if kind is Retry.REFRESH_TOKEN and not refreshed and self.refresh_access_token:
                refreshed = True
                token = await self.refresh_access_token()
                continue
            if kind is Retry.THROTTLED and self.may_wait(throttled, failure.retry_after):
                throttled += 1
                await self.sleep(self.backoff(throttled, failure.retry_after))
                continue
            if kind is Retry.SERVER and server < self.retry.server_attempts:
                server += 1
                await self.sleep(self.backoff(server, failure.retry_after))
                continue
            log.info(
                "%s %s %s failed: HTTP %s",
                self.rules.service,
                method,
                httpx.URL(url).path,
                failure.status,
            )
            raise self.rules.to_error(failure, not_found)

    async def json(self, method: str, path_or_url: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.send(method, path_or_url, **kwargs)
        if not response.content:
            return {}
        return json_object(response, self.rules.service)


class ApiClient:
    """The life of a client over :class:`AuthorizedHttp`: its retry policy, closing it,
    ``async with``."""

    _http: AuthorizedHttp[Any]

    @property
    def retry(self) -> RetryPolicy:
        return self._http.retry

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def get_public_json(
    http: httpx.AsyncClient, url: str, *, service: str
) -> tuple[dict[str, Any], httpx.Headers]:
    """A JSON document anyone may read (a provider's signing keys): no bearer token, no
    retries (the caller's caller retries: Pub/Sub redelivers a refused push)."""
    try:
        response = await http.get(url)
    except httpx.TransportError as exc:
        raise ConnectFailed(f"{service} could not be reached.") from exc
    if not response.is_success:
        raise ProviderError(f"{service} answered HTTP {response.status_code}.")
    return json_object(response, service), response.headers


def json_object(response: httpx.Response, service: str) -> dict[str, Any]:
    """The response's body as a JSON object; anything else is the provider's protocol error."""
    try:
        data = response.json()
    except ValueError as exc:
        raise ProtocolError(f"{service} answered with something that is not JSON.") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"{service} answered with JSON that is not an object.")
    return data
