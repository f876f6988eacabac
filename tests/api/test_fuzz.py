"""Schema-driven fuzzing of the whole JSON API (Schemathesis) against the real app.

Every operation of the OpenAPI document gets a fixed number of generated requests, valid
and invalid, derandomized so a run is repeatable and its time bounded. Whatever is sent,
the answer must not be a 5xx, and its status and body must be among those the document
declares (every error in the one error shape). Runs on SQLite, and on PostgreSQL with
``-m db`` (NUL bytes in text only fail there).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crmail.sync import connect
from tests.api.conftest import World

#: generated requests per operation and generation mode: about 30 s a database here;
#: FUZZ_EXAMPLES=200 digs deeper by hand
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _no_network(*args: object, **kwargs: object) -> list[str]:
    # Fuzzed server names must never become connections (this machine may only talk to
    # itself): every login "works", so the writes behind it are fuzzed too.
    return ["INBOX"]


# Hostile values the generators seldom reach in a few examples, spliced into generated
# requests: every string of the body gets a NUL or a lone surrogate, every integer
# (body, query, path) goes past 64 bits or below zero. One in two requests is left as
# generated.
def _strings(value: Any, add: str) -> Any:
    if isinstance(value, str):
        return value + add
    if isinstance(value, list):
        return [_strings(v, add) for v in value]
    if isinstance(value, dict):
        return {k: _strings(v, add) for k, v in value.items()}
    return value


def _integers(value: Any, number: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return number
    if isinstance(value, list):
        return [_integers(v, number) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v, number) for k, v in value.items()}
    return value


def _spoil(case: schemathesis.Case, how: str) -> schemathesis.Case:
    if how == "nul":
        case.body = _strings(case.body, "\x00")
        if case.query:
            case.query = _strings(dict(case.query), "\x00")
    elif how == "surrogate":
        case.body = _strings(case.body, "\ud800")  # JSON can carry it; UTF-8 cannot
    elif how in ("huge", "negative"):
        number = 2**70 if how == "huge" else -(2**63) - 1
        case.body = _integers(case.body, number)
        if case.query:
            case.query = _integers(dict(case.query), number)
        if case.path_parameters:
            case.path_parameters = _integers(dict(case.path_parameters), number)
    return case


SPOILERS = st.sampled_from(["as generated", "as generated", "nul", "surrogate", "huge", "negative"])


def _seed(world: World) -> None:
    """Something behind the first ids: a mailbox with a message, a contact, a lead, a deal."""
    box = world.mailbox(world.admin)
    world.deliver(
        box,
        b"From: Ann <ann@client.test>\r\nTo: boss@acme.test\r\nSubject: Hello\r\n"
        b"Message-ID: <1@client.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHi\r\n",
    )
    h = world.admin.headers
    lead = world.client.post("/api/leads", json={"name": "Client"}, headers=h).json()
    contact = world.client.post(
        "/api/contacts",
        json={"name": "Ann", "emails": ["ann@client.test"], "lead_id": lead["id"]},
        headers=h,
    ).json()
    world.client.post(
        "/api/deals", json={"title": "Deal", "contact_ids": [contact["id"]]}, headers=h
    )


@pytest.mark.db
def test_no_input_breaks_the_api(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect, "test_connection", _no_network)
    _seed(world)
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.client.app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                # no shrinking: a failure is reported as found, within the time bound
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), how=SPOILERS)
            def run(case: schemathesis.Case, how: str) -> None:
                case = _spoil(case, how)
                if how == "surrogate" and isinstance(case.body, dict | list):
                    # Sent as escaped JSON ("\\ud800"): Schemathesis writes UTF-8, which
                    # cannot carry a lone surrogate.
                    r = world.client.request(
                        case.method,
                        case.formatted_path,
                        params=case.query,
                        content=json.dumps(case.body),
                        headers={**world.admin.headers, "Content-Type": "application/json"},
                    )
                    # (Schemathesis's own checks re-encode the request: judged here.)
                    assert r.status_code < 500, r.text
                    if r.status_code >= 400:
                        assert set(r.json()) == {"error"}, r.text
                    return
                case.call_and_validate(headers=world.admin.headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to vary: no parameters, no body (negative mode)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
