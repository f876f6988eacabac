"""Throttling, server errors and expired tokens: retried as Google asks, then surfaced
in words. Requests are counted on the fake; backoff sleeps are recorded, not waited."""

from __future__ import annotations

import socket

import pytest

from crmail.errors import AuthFailed, ConnectFailed, ProviderRateLimited, ProviderUnavailable
from crmail.providers.gmail import GmailClient, Message
from tests.providers.gmail.conftest import Gmail
from tests.providers.gmail.mail import raw_message


async def test_429_waits_at_least_retry_after_then_succeeds(gmail: Gmail) -> None:
    gmail.fake.fail(429, times=2, path_contains="/profile", retry_after=7)
    before = gmail.fake.count("GET", "/profile")
    profile = await gmail.client.get_profile()
    assert profile.email_address == gmail.box.address
    assert gmail.fake.count("GET", "/profile") - before == 3
    assert len(gmail.sleeps) == 2 and all(7 <= s <= 8 for s in gmail.sleeps)


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
async def test_403_rate_limit_is_throttling_too(gmail: Gmail, reason: str) -> None:
    gmail.fake.fail(403, path_contains="/labels", reason=reason)
    assert await gmail.client.list_labels()
    assert len(gmail.sleeps) == 1


async def test_throttling_that_does_not_end_is_surfaced_with_its_retry_after(
    gmail: Gmail,
) -> None:
    gmail.fake.fail(429, times=100, path_contains="/profile", retry_after=2)
    before = gmail.fake.count("GET", "/profile")
    with pytest.raises(ProviderRateLimited) as caught:
        await gmail.client.get_profile()
    assert gmail.fake.count("GET", "/profile") - before == 1 + gmail.client.retry.throttled_attempts
    assert caught.value.retry_after == 2
    assert "limiting" in caught.value.message


async def test_a_long_retry_after_is_not_waited_out_inside_a_call(gmail: Gmail) -> None:
    gmail.fake.fail(429, path_contains="/profile", retry_after=900)
    with pytest.raises(ProviderRateLimited) as caught:
        await gmail.client.get_profile()
    assert caught.value.retry_after == 900
    assert gmail.sleeps == []


async def test_server_errors_are_retried_a_bounded_number_of_times(gmail: Gmail) -> None:
    gmail.fake.fail(503, times=2, path_contains="/labels")
    assert await gmail.client.list_labels()

    gmail.fake.fail(500, times=100, path_contains="/labels")
    before = gmail.fake.count("GET", "/labels")
    with pytest.raises(ProviderUnavailable) as caught:
        await gmail.client.list_labels()
    assert gmail.fake.count("GET", "/labels") - before == 1 + gmail.client.retry.server_attempts
    assert "trouble" in caught.value.message and caught.value.retryable


async def test_401_refreshes_the_token_once_then_retries(gmail: Gmail) -> None:
    old = gmail.tokens.current
    gmail.fake.revoke(old)
    profile = await gmail.client.get_profile()
    assert profile.email_address == gmail.box.address
    assert gmail.tokens.refreshes == 1


async def test_a_refused_fresh_token_is_auth_failed_with_a_reconnect_hint(gmail: Gmail) -> None:
    gmail.fake.fail(401, times=100, path_contains="/profile")
    before = gmail.fake.count("GET", "/profile")
    with pytest.raises(AuthFailed) as caught:
        await gmail.client.get_profile()
    assert gmail.tokens.refreshes == 1
    assert gmail.fake.count("GET", "/profile") - before == 2
    assert caught.value.hint and "reconnect" in caught.value.hint
    assert not caught.value.retryable


async def test_throttled_parts_of_a_batch_are_retried_alone(gmail: Gmail) -> None:
    ids = [gmail.box.deliver(raw_message(f"P{n}")).id for n in range(5)]
    gmail.fake.fail(429, times=2, path_contains=f"/messages/{ids[2]}", retry_after=3)
    before = gmail.fake.count("GET", "/messages/")
    results = await gmail.client.batch_get_metadata(ids, headers=["Subject"])
    assert all(isinstance(results[i], Message) for i in ids)
    # 5 parts, then the throttled one alone, twice.
    assert gmail.fake.count("GET", "/messages/") - before == 7
    assert len(gmail.sleeps) == 2 and min(gmail.sleeps) >= 3


async def test_an_expired_token_in_a_batch_refreshes_once(gmail: Gmail) -> None:
    ids = [gmail.box.deliver(raw_message(f"Q{n}")).id for n in range(3)]
    gmail.fake.fail(401, times=1, path_contains=f"/messages/{ids[1]}")
    results = await gmail.client.batch_get_metadata(ids)
    assert all(isinstance(results[i], Message) for i in ids)
    assert gmail.tokens.refreshes == 1


async def test_a_long_retry_after_on_a_batch_part_fails_that_part_without_waiting(
    gmail: Gmail,
) -> None:
    ids = [gmail.box.deliver(raw_message(f"W{n}")).id for n in range(2)]
    gmail.fake.fail(429, path_contains=f"/messages/{ids[0]}", retry_after=900)
    results = await gmail.client.batch_get_metadata(ids)
    assert isinstance(results[ids[0]], ProviderRateLimited)
    assert isinstance(results[ids[1]], Message)
    assert gmail.sleeps == []


async def test_a_failing_batch_request_is_retried_as_a_whole(gmail: Gmail) -> None:
    ids = [gmail.box.deliver(raw_message(f"B{n}")).id for n in range(2)]
    gmail.fake.fail(503, path_contains="/batch/gmail/v1")
    before = gmail.fake.count("POST", "/batch/gmail/v1")
    results = await gmail.client.batch_get_metadata(ids)
    assert all(isinstance(results[i], Message) for i in ids)
    assert gmail.fake.count("POST", "/batch/gmail/v1") - before == 2


async def test_an_unreachable_gmail_is_connect_failed_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []

    async def token() -> str:
        return "t"

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with GmailClient(token, base_url=f"http://127.0.0.1:{port}", sleep=sleep) as client:
        with pytest.raises(ConnectFailed) as caught:
            await client.get_profile()
    assert len(sleeps) == client.retry.server_attempts
    assert "could not reach Gmail" in caught.value.message
