"""The contract with systems outside fixstream: what travels with a record besides its value.

- **Schema header.** Every record fixstream writes carries ``fixstream.schema: <Event>/<n>``
  (``BugReport/4``). A record that names another event, or a version this worker cannot read
  (newer than its own), is dead-lettered with that reason. A record without the header is read
  as the worker's own version: producers may leave it out.
- **Key.** Records about a bug are keyed by its ``bug_id``. A report whose key differs from its
  ``bug_id`` is refused (dead-lettered, and its bug failed): a producer that keys by something
  else has mixed up two identities, and guessing which one it meant would fail silently. A
  record with no key is repaired: its ``bug_id`` is the key from then on.
- **Bug id of an unreadable record.** When the value cannot be read, the bug is the key if the
  key is a valid bug id, else ``<topic>:<partition>:<offset>``. Either way one ``failed`` fix
  event says why, and the dead letter carries the id in ``fixstream.dlq.bug_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fixstream.errors import BadInputError
from fixstream.schemas import Event
from fixstream.schemas.report import is_bug_id

SCHEMA_HEADER = "fixstream.schema"


def schema_tag(model: type[Event]) -> bytes:
    return f"{model.__name__}/{model.schema_version}".encode()


def header(headers: Any, name: str) -> bytes | None:
    """A header's value from Faust's or aiokafka's form (a mapping, or (name, value) pairs)."""
    items: Iterable[tuple[str, Any]] = (
        headers.items() if isinstance(headers, Mapping) else headers or ()
    )
    return next((bytes(v) for k, v in items if k == name and v is not None), None)


def check_schema(headers: Any, model: type[Event]) -> None:
    """Refuse a record whose schema header names another event or a version not readable."""
    raw = header(headers, SCHEMA_HEADER)
    if raw is None:
        return
    tag = raw.decode(errors="replace")
    name, _, version = tag.partition("/")
    readable = f"{model.__name__}/1 to {model.__name__}/{model.schema_version}"
    if name != model.__name__ or not version.isdigit():
        raise BadInputError(f"schema {tag!r} on a topic of {model.__name__}: expected {readable}")
    if not 1 <= int(version) <= model.schema_version:
        raise BadInputError(
            f"unsupported schema version {tag}: this worker reads {readable}; upgrade it"
        )


def check_key(key: bytes | None, bug_id: str) -> None:
    """Refuse a key that differs from the value's ``bug_id`` (no key is repaired)."""
    if key is None or key == bug_id.encode():
        return
    raise BadInputError(
        f"key {key.decode(errors='replace')[:200]!r} differs from bug_id {bug_id!r}: "
        "key bug reports by their bug_id"
    )


def bug_id_of(key: bytes | None, topic: str, partition: int, offset: int) -> str:
    """The bug an unreadable record is about: its key if that is a valid bug id, else its
    place in the log (deterministic: a redelivery names the same bug)."""
    if key is not None:
        try:
            text = key.decode()
        except UnicodeDecodeError:
            text = ""
        if is_bug_id(text):
            return text
    return f"{topic}:{partition}:{offset}"


def message(topic: str, key: str, event: Event) -> dict[str, Any]:
    """One record as any Kafka client must send it: what ``fixstream submit --wire`` prints."""
    return {
        "topic": topic,
        "key": key,
        "headers": {SCHEMA_HEADER: schema_tag(type(event)).decode()},
        "value": event.model_dump(mode="json"),
    }
