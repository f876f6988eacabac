"""The fake Graph itself, spoken to without crmail's client: the documented behaviours
the client's tests depend on (so a client test cannot pass against a lax fake)."""

from __future__ import annotations

import httpx

from tests.providers.graph.conftest import Graph
from tests.providers.graph.mail import raw_message

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def http(graph: Graph) -> httpx.Client:
    return httpx.Client(
        base_url=graph.url, headers={"Authorization": f"Bearer {graph.tokens.current}"}
    )


async def test_without_immutable_ids_a_move_changes_the_id(graph: Graph) -> None:
    msg = graph.box.deliver(raw_message("Mutable"))
    with http(graph) as client:
        old = client.get(f"/me/messages/{msg.id}").json()["id"]
        moved = client.post(f"/me/messages/{old}/move", json={"destinationId": "archive"})
        assert moved.status_code == 201 and moved.json()["id"] != old
        stale = client.get(f"/me/messages/{old}")
        assert stale.status_code == 404 and stale.json()["error"]["code"] == "ErrorItemNotFound"
        kept = client.get(f"/me/messages/{msg.id}", headers=IMMUTABLE).json()["id"]
        assert kept == msg.id


async def test_an_expired_delta_token_is_410_with_a_location(graph: Graph) -> None:
    with http(graph) as client:
        first = client.get("/me/mailFolders/inbox/messages/delta", headers=IMMUTABLE).json()
        graph.box.expire_delta()
        gone = client.get(first["@odata.deltaLink"], headers=IMMUTABLE)
    assert gone.status_code == 410
    assert gone.headers["location"].endswith("/messages/delta")


async def test_query_options_are_refused_after_the_first_request(graph: Graph) -> None:
    with http(graph) as client:
        first = client.get("/me/mailFolders/inbox/messages/delta").json()
        again = client.get(first["@odata.deltaLink"] + "&$select=subject")
    assert again.status_code == 400


async def test_a_delta_link_can_be_used_again_after_a_crash(graph: Graph) -> None:
    with http(graph) as client:
        first = client.get("/me/mailFolders/inbox/messages/delta", headers=IMMUTABLE).json()
        msg = graph.box.deliver(raw_message("Again"))
        a = client.get(first["@odata.deltaLink"], headers=IMMUTABLE).json()
        b = client.get(first["@odata.deltaLink"], headers=IMMUTABLE).json()
    assert [i["id"] for i in a["value"]] == [i["id"] for i in b["value"]] == [msg.id]


async def test_a_request_without_a_granted_token_is_401(graph: Graph) -> None:
    with httpx.Client(base_url=graph.url) as client:
        answer = client.get("/me", headers={"Authorization": "Bearer nobody"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
