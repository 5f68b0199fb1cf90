"""The exported JSON Schema of a producer's event accepts exactly what the worker accepts.

Documents generated from the exported schema (hypothesis-jsonschema) must pass the worker's
decode; documents the worker refuses must fail the schema too. Before this held, the schema
accepted ``repo: {}`` and ``bug_id: "a/../b"``, which the worker dead-letters."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from fixstream.codec import decode
from fixstream.errors import BadInputError
from fixstream.schemas import BugReport
from fixstream.schemas.export import to_jsonschema

SCHEMA = to_jsonschema(BugReport)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
LIMIT = 10**7


def worker_accepts(doc: object) -> bool:
    try:
        decode(BugReport, json.dumps(doc).encode(), LIMIT)
    except BadInputError:
        return False
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))  # ~30 s
@given(from_schema(SCHEMA))
def test_every_document_the_schema_accepts_the_worker_accepts(doc):
    assert worker_accepts(doc), doc


def _report(**fields) -> dict:
    return {"bug_id": "b-1", "title": "t", "repo": {"path": "/r"}, **fields}


REFUSED = {
    "no repository": _report(repo={}),
    "empty repository path": _report(repo={"path": ""}),
    "a null repository path and no url": _report(repo={"path": None}),
    "bug id stepping out": _report(bug_id="a/../b"),
    "bug id of one dot": _report(bug_id="."),
    "bug id with an empty segment": _report(bug_id="a//b"),
    "bug id ending in a slash": _report(bug_id="a/"),
    "bug id with a space": _report(bug_id="a b"),
    "bug id too long": _report(bug_id="a" * 201),
    "an artifact with content and uri": _report(
        artifacts=[{"name": "a", "content": "x", "uri": "s3://x", "sha256": "0" * 64}]
    ),
    "an artifact with neither": _report(artifacts=[{"name": "a"}]),
    "an artifact by uri without its digest": _report(artifacts=[{"name": "a", "uri": "s3://x"}]),
    "an artifact as submit reads it": _report(artifacts=[{"name": "a", "file": "build.log"}]),
    "no title": {"bug_id": "b", "repo": {"path": "/r"}},
    "an empty test command": _report(repo={"path": "/r", "test_command": []}),
    "an unknown priority": _report(priority="urgent"),
}


@pytest.mark.parametrize("doc", REFUSED.values(), ids=REFUSED.keys())
def test_what_the_worker_refuses_the_schema_refuses(doc):
    assert not worker_accepts(doc)
    assert not VALIDATOR.is_valid(doc)


ACCEPTED = {
    "a path": _report(),
    "a url and a commit": _report(repo={"url": "https://x/r.git", "commit": "abc"}),
    "segments with dots": _report(bug_id="PROJ-1/.hidden/..x/..."),
    "inline content": _report(artifacts=[{"name": "a", "content": "x", "uri": None}]),
    "by uri": _report(artifacts=[{"name": "a", "uri": "s3://x", "sha256": "0" * 64}]),
    "an unknown field": _report(tracker={"id": 12}),
}


@pytest.mark.parametrize("doc", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_the_worker_accepts_the_schema_accepts(doc):
    assert worker_accepts(doc)
    assert VALIDATOR.is_valid(doc), list(VALIDATOR.iter_errors(doc))
