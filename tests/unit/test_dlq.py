"""The pure parts of ``fixstream dlq`` and of the dead-letter sink they read."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from typer.testing import CliRunner

from fixstream.artifacts import ArtifactStore
from fixstream.config import Settings
from fixstream.dlq import (
    Entry,
    Ref,
    SelectionError,
    dlq_cli,
    matches,
    original,
    printable,
    replay,
    replay_headers,
    select,
    skip_reason,
    text_or_base64,
)
from fixstream.errors import ArtifactError, BadInputError, RepositoryNotFoundError
from fixstream.schemas import DeadLetter
from fixstream.streams.deadletters import (
    MAX_REASON_CHARS,
    REPLAYS_HEADER,
    DeadLetters,
    is_retryable,
    replays_of,
)

TOPICS = ["bugs.reported", "bugs.analyzed", "bugs.dlq"]
DLQ = "fixstream.dlq."


def letter(**fields) -> DeadLetter:
    defaults = {"original_topic": "bugs.reported", "partition": 0, "offset": 7,
                "stage": "decode:bugs.reported", "error_class": "BadInputError",
                "reason": "not valid JSON"}  # fmt: skip
    return DeadLetter(**{**defaults, **fields})


def entry(partition=0, offset=0, key=b"k", value=b"{", extra=(), **fields) -> Entry:
    headers = [*letter(**fields).headers(), *extra]
    return Entry.from_record(partition, offset, 1000 + offset, key, value, headers)


def test_values_are_text_when_utf8_else_base64():
    assert text_or_base64(None) == (None, None)
    assert text_or_base64("é\x00\u202e".encode()) == ("é\x00\u202e", "utf-8")
    text, encoding = text_or_base64(b"\xff\xfe\x00")
    assert encoding == "base64" and base64.b64decode(text) == b"\xff\xfe\x00"


def test_json_rendering_keeps_every_byte_recoverable():
    e = entry(key=b"\xff", value=b"\xc3(", replays=2, retryable=True)
    row = orjson.loads(orjson.dumps(e.as_json()))
    assert row["id"] == "0:0" and row["original_topic"] == "bugs.reported"
    assert (row["key_encoding"], row["value_encoding"]) == ("base64", "base64")
    assert base64.b64decode(row["key"]) == b"\xff" and base64.b64decode(row["value"]) == b"\xc3("
    assert row["replays"] == 2 and row["retryable"] is True and row["problem"] is None
    text = entry(value=b'{"title": "\\u0000"}').as_json()
    assert text["value"] == '{"title": "\\u0000"}' and text["value_encoding"] == "utf-8"


def test_terminal_rendering_escapes_control_and_bidi_characters():
    shown = printable("a\x00b\nc\u202edcba\x1b[31m\u200b", limit=None)
    assert shown == "a\\u0000b\\u000ac\\u202edcba\\u001b[31m\\u200b"
    assert printable("x" * 100, limit=10) == "x" * 9 + "…"
    assert printable("plain text, ünïcode ok") == "plain text, ünïcode ok"


def test_a_foreign_record_on_the_dlq_is_listed_not_fatal():
    foreign = Entry.from_record(1, 3, 0, None, b"junk", [("x", None)])
    assert foreign.letter is None and foreign.problem.startswith("not a dead letter")
    assert foreign.as_json()["problem"] and skip_reason(foreign, 3, TOPICS)


def test_offsets_parse_with_or_without_partition():
    assert Ref.parse("3:17") == Ref(3, 17) and Ref.parse(" 17 ") == Ref(None, 17)
    for bad in ["", "x", "1:x", "1:2:3"]:
        with pytest.raises(SelectionError):
            Ref.parse(bad)


def test_replay_refuses_without_a_selection():
    entries = [entry(offset=0, retryable=True)]
    with pytest.raises(SelectionError, match="nothing selected"):
        select(entries)
    with pytest.raises(SelectionError, match="nothing selected"):
        select(entries, stage="decode")  # a filter alone selects nothing


def test_selection_by_offset_and_by_retryable_narrowed_by_filters():
    a = entry(0, 5, stage="decode:bugs.reported", retryable=False)
    b = entry(1, 5, stage="analysis", error_class="RepositoryNotFoundError", retryable=True)
    c = entry(1, 6, stage="root_cause", error_class="RuntimeError", retryable=True)
    entries = [a, b, c]
    assert select(entries, ["1:5"]) == [b]
    assert select(entries, ["6"]) == [c]
    with pytest.raises(SelectionError, match="ambiguous"):
        select(entries, ["5"])
    with pytest.raises(SelectionError, match="no dead letter at 9"):
        select(entries, ["0:9"])
    assert select(entries, all_retryable=True) == [b, c]
    assert select(entries, all_retryable=True, stage="analysis") == [b]
    assert select(entries, ["0:5"], all_retryable=True, error="RuntimeError") == [c]
    assert select(entries, ["0:5", "0:5"]) == [a], "named twice, replayed once"
    assert matches(a, stage="decode") and not matches(a, stage="deco")
    assert matches(b, error="RepositoryNotFoundError") and not matches(b, error="Error")


def test_replays_are_bounded_and_go_only_to_fixstream_topics():
    assert skip_reason(entry(replays=2), 3, TOPICS) is None
    assert "already replayed 3 time(s)" in skip_reason(entry(replays=3), 3, TOPICS)
    assert "not a topic to replay to" in skip_reason(entry(original_topic="bugs.dlq"), 3, TOPICS)
    assert "not a topic to replay to" in skip_reason(entry(original_topic="__consumer"), 3, TOPICS)


def test_the_replay_header_counts_up_and_the_next_dead_letter_reads_it():
    headers = replay_headers(letter(replays=0))
    assert headers == [(REPLAYS_HEADER, b"1")]
    assert replays_of(headers) == 1
    assert replays_of(replay_headers(letter(replays=replays_of(headers)))) == 2
    for junk in [None, [], {"x": b"1"}, [(REPLAYS_HEADER, b"x")], [(REPLAYS_HEADER, b"-4")], [1]]:
        assert replays_of(junk) == 0, junk


def test_original_value_comes_from_the_store_checked(tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    uri, digest = store.put(b"big original")
    stored = [(f"{DLQ}value_uri", uri.encode()), (f"{DLQ}value_sha256", digest.encode())]
    assert asyncio.run(original(entry(value=None, extra=stored), "value", store)) == b"big original"
    assert asyncio.run(original(entry(key=b"k"), "key", store)) == b"k"
    wrong = [stored[0], (f"{DLQ}value_sha256", b"0" * 64)]
    with pytest.raises(ArtifactError, match="not this store's file"):
        asyncio.run(original(entry(value=None, extra=wrong), "value", store))
    secret = tmp_path / "secret"
    secret.write_bytes(b"not an artifact")
    outside = [(f"{DLQ}value_uri", secret.as_uri().encode()),
               (f"{DLQ}value_sha256", store.put(b"not an artifact")[1].encode())]  # fmt: skip
    with pytest.raises(ArtifactError, match="not this store's file"):
        asyncio.run(original(entry(value=None, extra=outside), "value", store))


def test_a_dry_run_replays_nothing_and_says_what_it_would(tmp_path: Path):
    settings = Settings(broker="127.0.0.1:1", data_dir=tmp_path)  # never contacted
    entries = [entry(0, 1, replays=0), entry(0, 2, replays=3), entry(0, 3, original_topic="x")]
    outcomes = asyncio.run(replay(settings, entries, max_replays=3, dry_run=True))
    assert [o.state for o in outcomes] == ["would replay", "skipped", "skipped"]
    assert (
        outcomes[0].line()
        == "would replay: bugs.dlq 0:1 -> bugs.reported key k (1 bytes, replay 1)"
    )


def test_the_replay_command_refuses_without_a_selection(monkeypatch):
    from fixstream.cli import State

    monkeypatch.setattr(State, "settings", Settings(broker="127.0.0.1:1"))
    result = CliRunner().invoke(dlq_cli, ["replay"])
    assert result.exit_code == 2
    assert "nothing selected" in result.output
    result = CliRunner().invoke(dlq_cli, ["replay", "--stage", "analysis", "--dry-run"])
    assert result.exit_code == 2


def test_commands_need_a_broker(monkeypatch):
    from fixstream.cli import State

    monkeypatch.setattr(State, "settings", Settings(broker=None))
    result = CliRunner().invoke(dlq_cli, ["list"])
    assert result.exit_code == 2 and "no broker" in result.output


class _Topic:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, **record):
        assert record["key"] is not None or record["value"] is not None, "as aiokafka asserts"
        self.sent.append(record)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _message(key, value, headers=()):
    return SimpleNamespace(topic="bugs.reported", partition=2, offset=9, timestamp=1.5,
                           key=key, value=value, headers=list(headers))  # fmt: skip


def _record_size(record) -> int:
    return (
        len(record["key"] or b"")
        + len(record["value"] or b"")
        + sum(len(k) + len(v) for k, v in record["headers"])
    )


def test_a_dead_letter_always_fits_and_keeps_every_byte(tmp_path: Path):
    """A huge key is not checked by any codec; it used to make the dead letter too large to
    produce, and the worker exit on it at every redelivery."""
    store = ArtifactStore(tmp_path)
    topic = _Topic()
    sink = DeadLetters(topic, "group", store, max_value_bytes=10_000)  # type: ignore[arg-type]
    cases = [(b"k" * 50_000, b"{"), (b"k", b"v" * 50_000), (b"k" * 30_000, b"v" * 40_000),
             (b"k", b"v" * 9_000), (None, None), (None, b"v" * 50_000)]  # fmt: skip
    for key, value in cases:
        asyncio.run(sink.send(_message(key, value), BadInputError("x"), stage="decode"))
    for (key, value), record in zip(cases, topic.sent, strict=True):
        assert _record_size(record) <= 10_000
        e = Entry.from_record(0, 0, 0, record["key"], record["value"], record["headers"])
        assert asyncio.run(original(e, "key", store)) == key
        assert asyncio.run(original(e, "value", store)) == value
    assert topic.sent[3]["value"] == b"v" * 9_000, "what fits stays in the record"
    assert topic.sent[0]["value"] == b"{" and topic.sent[0]["key"] is None, "the big one moves"


def test_a_dead_letter_carries_the_replay_count_and_bounded_encodable_text(tmp_path: Path):
    topic = _Topic()
    sink = DeadLetters(topic, "group", ArtifactStore(tmp_path), max_value_bytes=1 << 20)  # type: ignore[arg-type]
    message = _message(b"k", b"{}", [(REPLAYS_HEADER, b"2"), ("other", b"x")])
    reason = "bad \udcff " + "x" * 10_000  # a lone surrogate, as surrogateescape makes them
    letter = asyncio.run(sink.send(message, RepositoryNotFoundError(reason), stage="analysis"))
    assert letter.replays == 2 and len(letter.reason) == MAX_REASON_CHARS
    back = DeadLetter.from_record(b"k", b"{}", topic.sent[0]["headers"])
    assert back.replays == 2 and back.reason.startswith("bad \\udcff xxx")


def test_a_key_that_is_not_utf8_is_not_retryable():
    class KeyDecodeError(Exception):
        pass

    try:
        try:
            b"\xff".decode()
        except UnicodeDecodeError as inner:
            raise KeyDecodeError("wrapped") from inner
    except KeyDecodeError as outer:
        assert is_retryable(outer) is False
