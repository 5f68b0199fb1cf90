"""The base of every event: Avro-like identity (namespace, name, version) on pydantic v2.

Events are frozen (an event is a fact) and ignore unknown fields, so an older worker can read
what a newer producer wrote (forward compatibility); the snapshot test guards the other
direction (a newer worker must read what an older producer wrote).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = "io.fixstream"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """A message on a fixstream topic."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    namespace: ClassVar[str] = NAMESPACE
    schema_version: ClassVar[int] = 1

    @classmethod
    def full_name(cls) -> str:
        return f"{cls.namespace}.{cls.__name__}"

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=False))


class Part(BaseModel):
    """A value nested inside an event (not a message of its own)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class StageMeta(Part):
    """What makes a stage output idempotent: consumers drop a repeated (bug_id, stage, attempt)."""

    stage: str
    attempt: int = 0
    produced_at: datetime = Field(default_factory=utcnow)
    elapsed_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
