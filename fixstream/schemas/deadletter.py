"""Dead letters, after the Kafka Connect / Spring Kafka convention.

The record on ``bugs.dlq`` keeps the original key and value bytes untouched (so replay is a
plain re-produce), and the context an operator needs travels in headers.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from fixstream.schemas.base import Event, utcnow

HEADER_PREFIX = "fixstream.dlq."


class DeadLetter(Event):
    """The decoded view of one dead-letter record: headers plus the original bytes."""

    schema_version: ClassVar[int] = 2

    original_topic: str
    bug_id: str | None = None
    """The bug a refused stage input ended (``fixstream.wire``: from the value, the key, or
    the record's place in the log when neither can be read)."""
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    consumer_group: str = ""
    stage: str = ""
    error_class: str
    reason: str
    trace: str = ""
    attempt: int = 0
    retryable: bool = False
    replays: int = 0
    dead_lettered_at: datetime = Field(default_factory=utcnow)
    key: bytes | None = None
    value: bytes | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """Context as Kafka headers; the key and value go in the record itself."""
        fields = self.model_dump(mode="json", exclude={"key", "value"})
        return [(HEADER_PREFIX + k, str(v).encode()) for k, v in fields.items() if v is not None]

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> DeadLetter:
        fields = {
            k.removeprefix(HEADER_PREFIX): v.decode(errors="replace")
            for k, v in headers
            if k.startswith(HEADER_PREFIX)
        }
        fields["retryable"] = fields.get("retryable") == "True"
        return cls.model_validate({**fields, "key": key, "value": value})
