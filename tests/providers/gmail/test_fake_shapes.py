"""The fake Gmail speaks Gmail's own API: every route it serves exists in the discovery
document google-api-python-client ships (same method and path template), and every
field of its answers is declared in that method's response schema."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import googleapiclient

from tests.fakes.gmail import ROUTES, Answer, FakeGmail
from tests.providers.gmail.conftest import Gmail
from tests.providers.gmail.mail import raw_message

DISCOVERY = json.loads(
    (Path(googleapiclient.__file__).parent / "discovery_cache/documents/gmail.v1.json").read_text()
)


def _methods(resource: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {(m["httpMethod"], m["path"]): m for m in resource.get("methods", {}).values()}
    for sub in resource.get("resources", {}).values():
        found.update(_methods(sub))
    return found


METHODS = _methods(DISCOVERY)


def _undeclared(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if "$ref" in schema:
        schema = DISCOVERY["schemas"][schema["$ref"]]
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            return [f"{where} is an object where the schema has {schema.get('type')}"]
        for key, item in value.items():
            if key not in properties:
                problems.append(f"{where}.{key} is not declared")
            else:
                problems += _undeclared(item, properties[key], f"{where}.{key}")
    elif isinstance(value, list):
        if schema.get("type") != "array":
            return [f"{where} is a list where the schema has {schema.get('type')}"]
        for n, item in enumerate(value):
            problems += _undeclared(item, schema["items"], f"{where}[{n}]")
    elif schema.get("type") == "string" and not isinstance(value, str):
        # Google sends int64 and uint64 fields as strings; the fake must too.
        problems.append(f"{where} should be a string, is {value!r}")
    elif schema.get("type") == "integer" and not isinstance(value, int):
        problems.append(f"{where} should be an integer, is {value!r}")
    return problems


def test_every_route_of_the_fake_is_a_gmail_method() -> None:
    for method, template, _ in ROUTES:
        assert (method, template) in METHODS, f"{method} {template} is not in Gmail's API"


def test_the_discovery_document_names_the_batch_endpoint() -> None:
    assert DISCOVERY["batchPath"] == "batch"
    assert DISCOVERY["rootUrl"] == "https://gmail.googleapis.com/"
    fake_paths = {route.path for route in FakeGmail().app.routes}  # type: ignore[attr-defined]
    assert "/batch/gmail/v1" in fake_paths


def test_the_shape_checker_catches_an_undeclared_field() -> None:
    assert _undeclared({"id": "1", "labels": []}, {"$ref": "Message"}, "Message") == [
        "Message.labels is not declared"
    ]
    assert _undeclared({"historyId": 5}, {"$ref": "Profile"}, "Profile")


async def test_every_answer_of_a_full_session_is_shaped_as_documented(gmail: Gmail) -> None:
    """Exercise every route, then check each answer against its response schema."""
    c, box = gmail.client, gmail.box
    first = len(gmail.fake.answers)
    start = (await c.get_profile()).history_id
    a = box.deliver(raw_message("Shapes", message_id="<s1@example.test>"))
    box.deliver(raw_message("Other"))
    label = await c.create_label("Shapes")
    await c.list_labels()
    await c.list_messages(max_results=1)
    for fmt in ("minimal", "metadata", "raw"):
        await c.get_message(a.id, format=fmt)  # type: ignore[arg-type]
    await gmail.client.batch_get_metadata([a.id], headers=["Subject"])
    await c.modify_message(a.id, add=[label.id], remove=["UNREAD"])
    await c.batch_modify([a.id], remove=["INBOX"])
    await c.trash(a.id)
    await c.untrash(a.id)
    reply = raw_message("Re: Shapes", sender=box.address, in_reply_to="<s1@example.test>")
    await c.send_message(reply, thread_id=a.thread_id)
    await c.insert_message(raw_message("Inserted"), label_ids=["INBOX"])
    box.delete(a.id)
    await c.list_history(start)
    await c.watch("projects/p/topics/t")
    await c.stop()
    full = await c._json("GET", f"/messages/{box.deliver(raw_message(body='Full.')).id}")
    assert base64.urlsafe_b64decode(full["payload"]["body"]["data"]) == b"Full.\r\n"

    answers: list[Answer] = gmail.fake.answers[first:]
    seen = {(a.method, a.template) for a in answers}
    served = {(m, t) for m, t, _ in ROUTES}
    with_body = {k for k in served if "$ref" in METHODS[k].get("response", {})}
    assert with_body <= seen, f"not exercised: {with_body - seen}"
    problems = [
        problem
        for answer in answers
        for problem in _undeclared(
            answer.body,
            METHODS[(answer.method, answer.template)]["response"],
            re.sub(r"\W+", "_", answer.template),
        )
    ]
    assert problems == []
