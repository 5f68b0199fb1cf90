"""orjson on the wire, pydantic in the agents: one Faust codec per event type.

A payload that is not JSON, fails its schema or is too large raises inside the codec, which
Faust turns into a ValueDecodeError that our topics dead-letter (see ``streams.topics``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from faust.serializers import codecs
from pydantic import ValidationError

from fixstream.errors import BadInputError, describe_validation
from fixstream.schemas import EVENTS, Event

E = TypeVar("E", bound=Event)


def codec_name(model: type[Event]) -> str:
    return f"fixstream.{model.__name__}"


def encode(event: Event) -> bytes:
    return event.to_bytes()


def decode(model: type[E], data: bytes | None, max_bytes: int) -> E:
    """Bytes to a validated event, or a BadInputError that says exactly why not."""
    if data is None:
        raise BadInputError("empty message (no value)")
    if len(data) > max_bytes:
        raise BadInputError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadInputError(f"expected a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadInputError(
            f"does not match schema {model.full_name()}: {describe_validation(exc)}"
        ) from None


class EventCodec(codecs.Codec):
    """Faust codec for one event type."""

    def __init__(self, model: type[Event], max_bytes: int, **kwargs: Any) -> None:
        self.model = model
        self.max_bytes = max_bytes
        super().__init__(model=model, max_bytes=max_bytes, **kwargs)

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, Event):
            return encode(obj)
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Event:
        return decode(self.model, s, self.max_bytes)


def register_codecs(max_bytes: int) -> None:
    """Register a codec per event type (idempotent: a later call replaces the limits)."""
    for model in EVENTS.values():
        codecs.register(codec_name(model), EventCodec(model, max_bytes))
