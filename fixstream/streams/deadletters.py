"""Route a message that cannot be processed to ``bugs.dlq``, with what an operator needs.

The original key and value bytes are kept as they were; topic, partition, offset, group,
stage, error and whether a replay could succeed travel in headers. A value (then a key) too
big for the producer goes to the artifact store and a header carries its uri: nothing is lost.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import faust

from fixstream.artifacts import ArtifactStore
from fixstream.errors import FixstreamError
from fixstream.schemas import DeadLetter
from fixstream.schemas.deadletter import HEADER_PREFIX
from fixstream.wire import header

log = logging.getLogger(__name__)
MAX_TRACE_CHARS = 4000
REPLAYS_HEADER = HEADER_PREFIX + "replays"
"""Set by ``fixstream dlq replay`` on a re-submitted message; a new dead letter carries it on."""
VALUE_URI_HEADER = HEADER_PREFIX + "value_uri"
VALUE_SHA256_HEADER = HEADER_PREFIX + "value_sha256"
KEY_URI_HEADER = HEADER_PREFIX + "key_uri"
KEY_SHA256_HEADER = HEADER_PREFIX + "key_sha256"
VALUE_NULL_HEADER = HEADER_PREFIX + "value_null"
"""The original value was null; the record's empty value only stands in for it (a producer
cannot send a record with neither key nor value)."""
MAX_REASON_CHARS = 4000


def header_text(text: str, limit: int) -> str:
    """Bounded, and encodable as UTF-8 (a lone surrogate, e.g. from a file name decoded with
    surrogateescape, would otherwise make the dead letter itself fail)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers)


def header_count(headers: Any, name: str) -> int:
    """A count carried in header ``name`` (0 when it is absent or bad: headers come from any
    producer, so a bad one must not stop the processing of the message)."""
    try:
        raw = header(headers, name)
        return max(0, int(raw.decode("ascii"))) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def replays_of(headers: Any) -> int:
    """How often this message was replayed from the DLQ."""
    return header_count(headers, REPLAYS_HEADER)


def root_cause(exc: BaseException) -> BaseException:
    """The error that really happened, under Faust's Key/ValueDecodeError wrapper."""
    if type(exc).__name__.endswith("DecodeError") and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_retryable(exc: BaseException) -> bool:
    """Our errors say so themselves; an unexpected exception may be a bug fixed by a deploy,
    but bytes that are not UTF-8 (a key that cannot be decoded) stay so whatever is deployed."""
    cause = root_cause(exc)
    if isinstance(cause, FixstreamError):
        return cause.retryable
    return not isinstance(cause, UnicodeDecodeError)


def describe(exc: BaseException) -> tuple[str, str]:
    """(class, message) of the error that really happened."""
    cause = root_cause(exc)
    return type(cause).__name__, str(cause) or repr(cause)


class DeadLetters:
    def __init__(
        self,
        topic: faust.TopicT,
        group: str,
        store: ArtifactStore,
        max_value_bytes: int,
    ) -> None:
        self.topic = topic
        self.group = group
        self.store = store
        self.max_value_bytes = max_value_bytes

    async def send(
        self,
        message: Any,
        exc: BaseException,
        *,
        stage: str,
        attempt: int = 0,
        bug_id: str | None = None,
    ) -> DeadLetter:
        """Dead-letter one consumed Faust message and wait until the broker has it."""
        error_class, reason = describe(exc)
        trace = "".join(traceback.format_exception(exc))[-MAX_TRACE_CHARS:]
        key: bytes | None = message.key
        value: bytes | None = message.value
        letter = DeadLetter(
            original_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            consumer_group=self.group,
            stage=stage,
            error_class=error_class,
            reason=header_text(reason, MAX_REASON_CHARS),
            trace=header_text(trace, MAX_TRACE_CHARS),
            attempt=attempt,
            retryable=is_retryable(exc),
            replays=replays_of(getattr(message, "headers", None)),
            bug_id=bug_id,
        )
        headers = letter.headers()
        if record_size(key, value, headers) > self.max_value_bytes:
            key, value, headers = await self._fit(key, value, headers)
        if key is None and value is None:  # a null-keyed tombstone, or both in the store
            if message.value is None:
                headers.append((VALUE_NULL_HEADER, b"True"))
            value = b""
        log.warning(
            "dead-lettered %s[%s]@%s: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            error_class,
            letter.reason[:500],
        )
        delivery = await self.topic.send(key=key, value=value, headers=headers)
        await delivery
        return letter

    async def _fit(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """The record must fit the producer whatever was sent: the larger of value and key,
        then the other, goes to the store until it does (a huge key, which no codec checks,
        used to make the dead letter fail and the worker exit on every redelivery)."""
        parts = {"key": key, "value": value}
        for name in sorted(parts, key=lambda n: len(parts[n] or b""), reverse=True):
            data = parts[name]
            if (
                not data
                or record_size(parts["key"], parts["value"], headers) <= self.max_value_bytes
            ):
                continue
            uri, digest = await self.store.aput(data)
            headers = [
                *headers,
                (f"{HEADER_PREFIX}{name}_uri", uri.encode()),
                (f"{HEADER_PREFIX}{name}_sha256", digest.encode()),
            ]
            parts[name] = None
        return parts["key"], parts["value"], headers
