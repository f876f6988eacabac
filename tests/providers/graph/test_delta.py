"""Per-folder message delta against the fake Graph: pages (empty ones too), the delta
link handed back only when a round completes, removals, moves, replays, expiry."""

from __future__ import annotations

import datetime as dt

import pytest

from crmail.errors import HistoryExpired, ProviderUnavailable
from crmail.providers.graph import MessageDelta
from tests.providers.graph.conftest import Graph
from tests.providers.graph.mail import raw_message


def ids(delta: MessageDelta) -> set[str]:
    return {m.id for m in delta.messages}


def removed(delta: MessageDelta) -> dict[str, str]:
    return {r.id: r.reason for r in delta.removed}


async def test_first_round_lists_the_folder_over_many_pages_including_empty_ones(
    graph: Graph,
) -> None:
    delivered = {graph.box.deliver(raw_message(f"M{n}")).id for n in range(7)}
    graph.box.empty_pages = 2
    before = graph.fake.count("GET", "/messages/delta")
    delta = await graph.client.messages_delta("inbox", page_size=3)
    assert ids(delta) == delivered and not delta.removed
    # 3 pages of items, then 2 empty pages, the last one carrying the delta link.
    assert graph.fake.count("GET", "/messages/delta") - before == 5
    assert "$deltatoken=" in delta.delta_link
    first = delta.messages[0]
    assert first.subject and first.conversation_id and first.received and first.sender
    assert first.is_read is False


async def test_since_limits_the_first_round_to_recent_mail(graph: Graph) -> None:
    old = graph.box.deliver(raw_message("Old"), received=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    new = graph.box.deliver(raw_message("New"))
    delta = await graph.client.messages_delta("inbox", since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    assert ids(delta) == {new.id}
    assert old.id not in ids(delta)


async def test_next_round_reports_new_changed_and_removed_messages(graph: Graph) -> None:
    kept = graph.box.deliver(raw_message("Kept"))
    read = graph.box.deliver(raw_message("Read"))
    gone = graph.box.deliver(raw_message("Gone"))
    soft = graph.box.deliver(raw_message("Soft"))
    first = await graph.client.messages_delta("inbox")

    graph.box.mark_read(read.id)
    graph.box.delete(gone.id)
    graph.box.delete(soft.id, soft=True)
    arrived = graph.box.deliver(raw_message("Arrived"))
    second = await graph.client.messages_delta("inbox", first.delta_link)

    assert ids(second) == {read.id, arrived.id}
    changed = next(m for m in second.messages if m.id == read.id)
    assert changed.is_read is True and changed.subject is None  # only what changed
    assert removed(second) == {gone.id: "deleted", soft.id: "changed"}
    assert kept.id not in ids(second)

    third = await graph.client.messages_delta("inbox", second.delta_link)
    assert not third.messages and not third.removed


async def test_a_move_is_a_removal_from_one_folder_and_an_arrival_in_the_other(
    graph: Graph,
) -> None:
    msg = graph.box.deliver(raw_message("Moving"))
    inbox = await graph.client.messages_delta("inbox")
    archive = await graph.client.messages_delta("archive")
    graph.box.move(msg.id, "archive")

    inbox2 = await graph.client.messages_delta("inbox", inbox.delta_link)
    archive2 = await graph.client.messages_delta("archive", archive.delta_link)
    assert removed(inbox2) == {msg.id: "deleted"}
    # Immutable ids: the same id in the other folder, which crmail reads as a move.
    assert ids(archive2) == {msg.id}
    assert archive2.messages[0].parent_folder_id == graph.box.folder("archive").id


async def test_a_message_moved_away_and_back_is_reported_removed_and_never_re_added(
    graph: Graph,
) -> None:
    msg = graph.box.deliver(raw_message("A to B to A"))
    first = await graph.client.messages_delta("inbox")
    graph.box.move(msg.id, "archive")
    graph.box.move(msg.id, "inbox")

    second = await graph.client.messages_delta("inbox", first.delta_link)
    assert removed(second) == {msg.id: "deleted"} and not second.messages
    graph.box.mark_read(msg.id)
    third = await graph.client.messages_delta("inbox", second.delta_link)
    assert msg.id not in ids(third)
    # Only a fresh first round (crmail's resync) lists it again.
    again = await graph.client.messages_delta("inbox")
    assert msg.id in ids(again)


async def test_the_delta_link_comes_only_when_the_round_completes(graph: Graph) -> None:
    for n in range(4):
        graph.box.deliver(raw_message(f"P{n}"))
    first = await graph.client.messages_delta("inbox")
    late = graph.box.deliver(raw_message("Late"))
    for n in range(4):
        graph.box.deliver(raw_message(f"Q{n}"))
    # A later page of the next round keeps failing: the call raises, hands back no
    # link, and the stored (old) link still gives the whole round again.
    graph.fake.fail(503, times=100, query_contains="skiptoken")
    with pytest.raises(ProviderUnavailable):
        await graph.client.messages_delta("inbox", first.delta_link, page_size=2)
    graph.fake.faults.clear()

    again = await graph.client.messages_delta("inbox", first.delta_link, page_size=2)
    assert len(again.messages) == 5 and late.id in ids(again)


async def test_graph_may_replay_a_round_and_the_client_reports_it_again(graph: Graph) -> None:
    first = await graph.client.messages_delta("inbox")
    msg = graph.box.deliver(raw_message("Twice"))
    graph.box.replay_rounds = 1
    second = await graph.client.messages_delta("inbox", first.delta_link)
    third = await graph.client.messages_delta("inbox", second.delta_link)
    assert ids(second) == ids(third) == {msg.id}


@pytest.mark.parametrize(
    ("status", "code"), [(410, ""), (400, "syncStateNotFound"), (400, "resyncRequired")]
)
async def test_an_expired_delta_link_is_history_expired_not_a_retry(
    graph: Graph, status: int, code: str
) -> None:
    graph.box.deliver(raw_message("Before"))
    first = await graph.client.messages_delta("inbox")
    graph.box.expire_delta(status, code)
    before = graph.fake.count("GET", "/messages/delta")
    with pytest.raises(HistoryExpired) as caught:
        await graph.client.messages_delta("inbox", first.delta_link)
    assert graph.fake.count("GET", "/messages/delta") - before == 1
    assert "read again in full" in caught.value.message and not caught.value.retryable
    # The documented way on: a fresh first round.
    assert len((await graph.client.messages_delta("inbox")).messages) == 1


async def test_ids_stay_the_same_across_moves(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Immutable"))
    start = len(graph.fake.requests)
    moved = await graph.client.move_message(msg.id, "archive")
    assert moved.id == msg.id
    back = await graph.client.move_message(moved.id, "inbox")
    assert back.id == msg.id
    assert (await graph.client.get_message(msg.id)).parent_folder_id == graph.box.folder("inbox").id
    assert all('IdType="ImmutableId"' in r.prefer for r in graph.fake.requests[start:])


async def test_folder_delta_lists_well_known_folders_then_reports_changes(graph: Graph) -> None:
    first = await graph.client.folders_delta()
    names = {f.display_name for f in first.folders}
    assert {"Inbox", "Sent Items", "Deleted Items", "Archive"} <= names
    created = graph.box.create_folder("Clients")
    graph.box.delete_folder("junkemail")
    junk_id = next(f.id for f in first.folders if f.display_name == "Junk Email")
    second = await graph.client.folders_delta(first.delta_link)
    assert [f.display_name for f in second.folders] == ["Clients"]
    assert second.folders[0].id == created.id
    assert {r.id for r in second.removed} == {junk_id}
