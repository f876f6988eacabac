"""Throttling, server errors, expired tokens and the per-mailbox concurrency cap:
retried as Microsoft asks, then surfaced in words. Requests are counted on the fake;
backoff sleeps are recorded, not waited."""

from __future__ import annotations

import asyncio

import pytest

from crmail.errors import AuthFailed, ProviderRateLimited, ProviderUnavailable
from crmail.providers.graph import MAILBOX_CONCURRENCY
from tests.providers.graph.conftest import Graph
from tests.providers.graph.mail import raw_message


async def test_429_waits_at_least_retry_after_then_succeeds(graph: Graph) -> None:
    graph.fake.fail(429, times=2, path_contains="/me", retry_after=7)
    before = graph.fake.count("GET", "/me")
    assert (await graph.client.me()).address == graph.box.address
    assert graph.fake.count("GET", "/me") - before == 3
    assert len(graph.sleeps) == 2 and all(7 <= s <= 8 for s in graph.sleeps)


@pytest.mark.parametrize("status", [503, 504])
async def test_503_and_504_are_retried_honouring_retry_after(graph: Graph, status: int) -> None:
    graph.fake.fail(status, times=1, path_contains="/mailFolders/inbox", retry_after=4)
    assert (await graph.client.folder("inbox")).display_name == "Inbox"
    assert len(graph.sleeps) == 1 and 4 <= graph.sleeps[0] <= 5


async def test_throttling_that_does_not_end_is_surfaced_with_its_retry_after(
    graph: Graph,
) -> None:
    graph.fake.fail(429, times=100, path_contains="/me", retry_after=2)
    before = graph.fake.count("GET", "/me")
    with pytest.raises(ProviderRateLimited) as caught:
        await graph.client.me()
    assert graph.fake.count("GET", "/me") - before == 1 + graph.client.retry.throttled_attempts
    assert caught.value.retry_after == 2 and "Microsoft is limiting" in caught.value.message


async def test_a_long_retry_after_is_not_waited_out_inside_a_call(graph: Graph) -> None:
    graph.fake.fail(429, path_contains="/me", retry_after=900)
    with pytest.raises(ProviderRateLimited) as caught:
        await graph.client.me()
    assert caught.value.retry_after == 900 and graph.sleeps == []


async def test_server_errors_that_persist_are_provider_unavailable(graph: Graph) -> None:
    graph.fake.fail(503, times=100, path_contains="/mailFolders/")
    with pytest.raises(ProviderUnavailable) as caught:
        await graph.client.folder("inbox")
    assert len(graph.sleeps) == graph.client.retry.server_attempts
    assert "Microsoft Graph is having trouble" in caught.value.message


async def test_401_refreshes_the_token_once_then_retries(graph: Graph) -> None:
    graph.fake.revoke(graph.tokens.current)
    assert (await graph.client.me()).address == graph.box.address
    assert graph.tokens.refreshes == 1


async def test_a_refused_fresh_token_is_auth_failed_with_a_reconnect_hint(graph: Graph) -> None:
    graph.fake.fail(401, times=100, path_contains="/me")
    before = graph.fake.count("GET", "/me")
    with pytest.raises(AuthFailed) as caught:
        await graph.client.me()
    assert graph.tokens.refreshes == 1
    assert graph.fake.count("GET", "/me") - before == 2
    assert caught.value.hint and "reconnect" in caught.value.hint


async def test_no_more_than_four_requests_are_in_flight_per_mailbox(graph: Graph) -> None:
    ids = [graph.box.deliver(raw_message(f"C{n}")).id for n in range(12)]
    graph.fake.latency = 0.05  # keeps requests in flight long enough to overlap
    before = graph.fake.count(status=429)
    messages = await asyncio.gather(*(graph.client.get_message(i) for i in ids))
    assert [m.id for m in messages] == ids
    assert 1 < graph.box.max_in_flight <= MAILBOX_CONCURRENCY
    # The fake answers 429 MailboxConcurrency over the limit: none was needed.
    assert graph.fake.count(status=429) == before and graph.sleeps == []


async def test_every_request_asks_for_immutable_ids(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Prefer"))
    start = len(graph.fake.requests)
    await graph.client.messages_delta("inbox", page_size=1)
    await graph.client.get_mime(msg.id)
    await graph.client.update_message(msg.id, is_read=True)
    mine = graph.fake.requests[start:]
    assert mine and all('IdType="ImmutableId"' in r.prefer for r in mine)


async def test_a_link_to_another_server_is_not_followed_with_the_token(graph: Graph) -> None:
    from crmail.errors import ProtocolError

    with pytest.raises(ProtocolError) as caught:
        await graph.client.messages_delta("inbox", "https://elsewhere.test/v1.0/me/delta")
    assert "another server" in caught.value.message
