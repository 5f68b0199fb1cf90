import orjson
import pytest
from faust.serializers import codecs

from fixstream.codec import codec_name, decode, register_codecs
from fixstream.errors import BadInputError
from fixstream.schemas import BugReport, RepoRef


def _report(**overrides) -> BugReport:
    fields = {"bug_id": "b-1", "title": "boom", "repo": RepoRef(path="/tmp")} | overrides
    return BugReport(**fields)


def test_roundtrip_through_the_registered_faust_codec():
    register_codecs(max_bytes=10_000)
    report = _report(description="x" * 100)
    name = codec_name(BugReport)
    data = codecs.dumps(name, report)
    assert orjson.loads(data)["bug_id"] == "b-1"
    assert codecs.loads(name, data) == report


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"bug_id": "b"}', "does not match schema io.fixstream.BugReport"),
        (b'{"bug_id": "b", "title": "t", "repo": {}}', "repo: Value error, a repository needs"),
        (b'{"bug_id": "has space", "title": "t", "repo": {"path": "/"}}', "bug_id"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_payloads_say_why(payload, reason):
    with pytest.raises(BadInputError, match=reason.replace("(", r"\(")):
        decode(BugReport, payload, max_bytes=10_000)


def test_oversized_payload_is_refused_before_parsing():
    data = _report(description="x" * 5000).to_bytes()
    with pytest.raises(BadInputError, match=f"message of {len(data)} bytes exceeds the limit"):
        decode(BugReport, data, max_bytes=1000)


def test_unknown_fields_from_a_newer_producer_are_ignored():
    data = orjson.loads(_report().to_bytes()) | {"added_in_v2": 1}
    assert decode(BugReport, orjson.dumps(data), max_bytes=10_000).bug_id == "b-1"
