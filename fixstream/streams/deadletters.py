"""Route a message that cannot be processed to ``bugs.dlq``, with what an operator needs.

The original key and value bytes are kept as they were; topic, partition, offset, group,
stage, error and whether a replay could succeed travel in headers. A value too big for the
producer goes to the artifact store and the header carries its uri: nothing is lost.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import faust

from fixstream.artifacts import ArtifactStore
from fixstream.errors import FixstreamError
from fixstream.schemas import DeadLetter

log = logging.getLogger(__name__)
MAX_TRACE_CHARS = 4000


def root_cause(exc: BaseException) -> BaseException:
    """The error that really happened, under Faust's Key/ValueDecodeError wrapper."""
    if type(exc).__name__.endswith("DecodeError") and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_retryable(exc: BaseException) -> bool:
    """Our errors say so themselves; an unexpected exception may be a bug fixed by a deploy."""
    cause = root_cause(exc)
    return cause.retryable if isinstance(cause, FixstreamError) else True


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
        self, message: Any, exc: BaseException, *, stage: str, attempt: int = 0
    ) -> DeadLetter:
        """Dead-letter one consumed Faust message and wait until the broker has it."""
        error_class, reason = describe(exc)
        trace = "".join(traceback.format_exception(exc))[-MAX_TRACE_CHARS:]
        value: bytes | None = message.value
        letter = DeadLetter(
            original_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            consumer_group=self.group,
            stage=stage,
            error_class=error_class,
            reason=reason,
            trace=trace,
            attempt=attempt,
            retryable=is_retryable(exc),
        )
        headers = letter.headers()
        if value is not None and len(value) > self.max_value_bytes:
            uri, digest = await self.store.aput(value)
            headers += [
                ("fixstream.dlq.value_uri", uri.encode()),
                ("fixstream.dlq.value_sha256", digest.encode()),
            ]
            value = None
        log.warning(
            "dead-lettered %s[%s]@%s: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            error_class,
            reason,
        )
        delivery = await self.topic.send(key=message.key, value=value, headers=headers)
        await delivery
        return letter
