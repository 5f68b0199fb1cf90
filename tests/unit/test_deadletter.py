import asyncio

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


async def test_a_message_that_cannot_be_decoded_is_dead_lettered_before_it_is_acked():
    """Faust's conductor acks an undecodable message, then calls the topic's error handler.
    A worker killed between the two left it committed and never dead-lettered. Run through
    the real conductor: the broker has the dead letter before the ack."""
    import faust
    from faust.types import TP, Message

    from fixstream.codec import register_codecs
    from fixstream.config import TOPICS_FILE
    from fixstream.streams.topics import DeadLetteringTopic, Topics
    from fixstream.topics import load_catalog

    register_codecs(1_000_000)
    app = faust.App("decode-order", broker="kafka://127.0.0.1:1")
    catalog = load_catalog(TOPICS_FILE)
    topic: DeadLetteringTopic = Topics(app, catalog)["bugs.reported"]
    order: list[str] = []

    class Letters:
        async def send(self, message, exc, *, stage, bug_id=None):
            order.append(f"dead-lettered {bug_id} ({'acked' if message.acked else 'not acked'})")
            return DeadLetter(original_topic=message.topic, stage=stage, error_class="E",
                              reason="why")  # fmt: skip

    class Status:
        async def send(self, key, value):
            order.append(f"{value.state} {key} ({'acked' if message.acked else 'not acked'})")
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    topic.dead_letters = Letters()
    message = Message("bugs.reported", 0, 7, 0.0, 0, [], b"bug-1", b"\x00not json", None)
    app.flow_control.resume()
    handler = app.topics._build_handler(TP("bugs.reported", 0), {topic})
    await handler(message)
    assert message.acked and order == ["dead-lettered None (not acked)"]

    # a stage's input: the bug is ended too (its failed fix event), still before the ack
    order.clear()
    topic.ends_bugs = Status()
    message = Message("bugs.reported", 0, 8, 0.0, 0, [], b"bug-1", b"\x00not json", None)
    await handler(message)
    assert message.acked
    assert order == ["dead-lettered bug-1 (not acked)", "dead_lettered bug-1 (not acked)"]
