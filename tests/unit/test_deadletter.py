from fixstream.errors import BadInputError
from fixstream.schemas import DeadLetter
from fixstream.streams.deadletters import describe, is_retryable


def test_headers_roundtrip_with_original_bytes():
    letter = DeadLetter(
        original_topic="bugs.reported",
        partition=3,
        offset=42,
        timestamp_ms=1700000000000,
        consumer_group="fixstream",
        stage="analysis",
        error_class="BadInputError",
        reason="not valid JSON",
        retryable=False,
    )
    back = DeadLetter.from_record(b"k", b"\x00raw", letter.headers())
    assert back.key == b"k" and back.value == b"\x00raw"
    assert (back.original_topic, back.partition, back.offset) == ("bugs.reported", 3, 42)
    assert back.retryable is False and back.reason == "not valid JSON"


def test_decode_errors_are_described_by_their_cause():
    class ValueDecodeError(Exception):
        pass

    try:
        try:
            raise BadInputError("not valid JSON: x")
        except BadInputError as inner:
            raise ValueDecodeError("wrapped") from inner
    except ValueDecodeError as outer:
        assert describe(outer) == ("BadInputError", "not valid JSON: x")
        assert is_retryable(outer) is False  # judged by the cause, not the wrapper
    assert is_retryable(RuntimeError("a bug of ours")) is True
