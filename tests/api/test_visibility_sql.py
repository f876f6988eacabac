"""Every read path's SQL keeps the visibility rule correlated to its rows.

Walks every GET route (the cases of ``test_visibility.py``) as the owner, a teammate and
an admin, records each statement the database ran and each warning SQLAlchemy gave while
compiling it (its FROM linter is on), and checks that no statement holds a rule subquery
that reads a table of the enclosing query instead of correlating to it, and that nothing
warned of a cartesian product: either shape makes the rule true for every row.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, exc

from crmail.storage import web as web_store
from tests.api.conftest import World
from tests.api.test_visibility import CASES, cid_url, scene, signed_in  # noqa: F401  (the fixtures)
from tests.storage.test_visibility_rule import leaking_subqueries, rule_subqueries
from tests.web.conftest import PASSWORD, sign_in


@pytest.mark.parametrize("who", ["owner", "teammate", "admin"])
def test_no_read_path_runs_an_uncorrelated_rule(
    world: World, request: pytest.FixtureRequest, who: str
) -> None:
    ids = request.getfixturevalue("scene").ids
    clients: dict[str, TestClient] = request.getfixturevalue("signed_in")
    if who == "owner":
        client = TestClient(world.client.app, headers=world.owner.headers)
        client.__enter__()
        world.services.db.run(lambda s: web_store.set_password(s, world.owner.id, PASSWORD))
        assert sign_in(client, world.owner.email).status_code == 303
    else:
        client = clients[who]
    viewer = getattr(world, who)
    statements: list[str] = []

    def grab(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(world.services.db.engine, "before_cursor_execute", grab)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for cases in CASES.values():
                for case in cases:
                    if case.url.startswith("{cid:"):
                        url = cid_url(world, client, viewer, ids[case.url[5:-1]])
                    else:
                        url = case.url.format(**ids)
                    assert client.get(url, follow_redirects=False).status_code < 500, url
    finally:
        event.remove(world.services.db.engine, "before_cursor_execute", grab)
        if who == "owner":
            client.__exit__(None, None, None)
    cartesian = [
        str(w.message)
        for w in seen
        if issubclass(w.category, exc.SAWarning) and "cartesian product" in str(w.message)
    ]
    assert cartesian == []
    with_rule = [sql for sql in statements if rule_subqueries(sql)]
    assert with_rule, "no statement ran the rule: the walk no longer reaches it"
    assert [(sql, leaking_subqueries(sql)) for sql in with_rule if leaking_subqueries(sql)] == []
